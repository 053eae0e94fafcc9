#!/usr/bin/env bash
# make demo: build an example version offline, from git repositories created locally, and show
# what runpod-comfy made: the runtime root, the lock, the plan, a no-op rebuild and what GC would
# collect. Usage: scripts/demo.sh [DEMO_DIR] (default .demo); needs bin/runpod-comfy (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/runpod-comfy
demo=${1:-.demo}
rm -rf "$demo"
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rc() {
	printf '$ runpod-comfy %s\n' "$*"
	"$bin" --root "$demo/root" --versions-dir "$demo/versions" "$@"
}

step "Preparing local git repositories (ComfyUI stand-in, two custom nodes, a submodule) and a model"
go run ./scripts/demosrc "$demo"
echo "spec: $demo/versions/demo.json"
cat "$demo/versions/demo.json"

step "Building version demo (resolves refs to commits first, since there is no lock yet)"
rc build demo

step "The runtime root ($demo/root/builds/comfy-demo)"
root=$(readlink -f "$demo/root/builds/comfy-demo")
(cd "$root" && find . -maxdepth 3 ! -name . | sort | while read -r p; do
	if [ -L "$p" ]; then printf '%s -> %s\n' "$p" "$(readlink "$p")"; else printf '%s\n' "$p"; fi
done)
echo
echo "--- extra_model_paths.yaml"
cat "$root/extra_model_paths.yaml"
echo "--- manifest.json: ComfyUI's flags, read from the pinned checkout's comfy/cli_args.py"
python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["comfy"]["flags"]; print(len(f), "flags:", " ".join(f[:8]), "...")' "$root/manifest.json"

step "The lock ($demo/root/cache/runpod-comfy/resolved/demo.lock.json)"
cat "$demo/root/cache/runpod-comfy/resolved/demo.lock.json"

step "The plan: every object with its store path, all valid now"
rc plan demo

step "A second build is a no-op: metadata only, nothing fetched or hashed"
start=$(date +%s%N)
rc build demo
echo "took $(( ($(date +%s%N) - start) / 1000000 )) ms (including process start)"

step "The launcher finds its root wherever the volume is mounted"
head -n 3 "$root/bin/comfyui"
echo "..."
tail -n 1 "$root/bin/comfyui"

step "What gc would delete (nothing: the root and its closure are live)"
if "$bin" gc --help >/dev/null 2>&1; then
	rc gc --dry-run
else
	echo "(gc is not in this build)"
fi

step "Done"
echo "runtime root: $root"
echo "try: $bin --root $demo/root --versions-dir $demo/versions plan demo --dot"
