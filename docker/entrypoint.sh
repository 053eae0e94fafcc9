#!/bin/sh
# Entry point of the runpod-comfy image: runs `runpod-comfy serve` (the RunPod serverless
# worker) by default. Arguments replace the default command, so a pod can run
# `run-ui`, `build <id>` or any other runpod-comfy command with the same image; arguments
# starting with "-" are flags for serve.
set -eu

if [ "$#" -eq 0 ]; then
	set -- serve
fi
case "$1" in
-*) set -- serve "$@" ;;
# A pod kept up for a shell (start command `sleep infinity`) or a shell itself.
sleep | sh | bash) exec "$@" ;;
esac

# worker-comfyui compatibility: SERVE_API_LOCALLY=true serves the local test API on port 8000.
if [ "$1" = serve ] && [ "${SERVE_API_LOCALLY:-false}" = true ]; then
	set -- "$@" --api-port "${RUNPOD_REALTIME_PORT:-8000}" --api-host 0.0.0.0
fi

exec runpod-comfy "$@"
