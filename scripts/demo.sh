#!/usr/bin/env bash
# make demo: validate the example versions (later: build one offline).
set -euo pipefail
bin=bin/runpod-comfy
"$bin" version
