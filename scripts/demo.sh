#!/usr/bin/env bash
# make demo: build an example version offline, from git repositories created locally, and show
# what runpod-comfy made: the runtime root, the lock, the plan, a no-op rebuild, ComfyUI (the
# stand-in) started read-only from the root, a workflow run end to end, a reproducibility check
# and what GC would collect. Usage: scripts/demo.sh [DEMO_DIR] (default .demo); needs bin/runpod-comfy (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/runpod-comfy
demo=${1:-.demo}
rm -rf "$demo"
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rc() {
	printf '$ runpod-comfy %s\n' "$*" >&2
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
# ComfyUI gets the root's folders as absolute paths, computed where the launcher runs.
sed -n '/--extra-model-paths-config \/dev\/fd\/9/,$p' "$root/bin/comfyui"

step "Running ComfyUI (the stand-in) from the read-only root, its writes redirected to $demo/state"
state=$demo/state
mkdir -p "$state/input" "$state/output" "$state/user"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
COMFY_PYTHON=python3 "$demo/root/builds/comfy-demo/bin/comfyui" --listen 127.0.0.1 --port "$port" \
	--output-directory "$state/output" --input-directory "$state/input" --temp-directory "$state" \
	--user-directory "$state/user" --database-url "sqlite:///$state/user/comfyui.db" >"$state/comfyui.log" 2>&1 &
comfy_pid=$!
trap 'kill "$comfy_pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import json, sys, time, urllib.request
url = "http://127.0.0.1:%s/object_info" % sys.argv[1]
for _ in range(200):
    try:
        nodes = json.load(urllib.request.urlopen(url, timeout=2))
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("ComfyUI did not start: see the log")
print("nodes served:", ", ".join(sorted(nodes)))
print("HelloText (from custom_nodes/hello-node, found through extra_model_paths.yaml):",
      "yes" if "HelloText" in nodes else "NO")
PY
kill "$comfy_pid"
wait "$comfy_pid" 2>/dev/null || true
trap - EXIT

step "Running a workflow end to end: run-handler starts ComfyUI, runs it, writes the outputs, stops"
rc run-handler demo --workflow workflows/standin-image.json --output file --out-dir "$demo/out" >"$demo/result.json"
echo "result: $demo/result.json"
python3 -c 'import json,sys; r=json.load(sys.stdin); [print("output:", o.get("node_id"), o.get("filename"), o.get("mime"), o.get("size"), "bytes ->", o.get("path", "")) for o in r.get("outputs", [])]' <"$demo/result.json"
ls -l "$demo/out"

step "Proving it: check rebuilds every non-fixed object in a scratch store and compares"
rc check demo

step "What gc would delete (nothing: the root and its closure are live)"
rc gc --dry-run

step "Done"
echo "runtime root: $root"
echo "try: $bin --root $demo/root --versions-dir $demo/versions plan demo --dot"
