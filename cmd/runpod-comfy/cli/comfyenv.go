package cli

import (
	"os"
	"strings"
)

// comfyEnviron is the base environment ComfyUI runs with: this process's, less the credentials
// that runpod-comfy itself uses and ComfyUI has no business seeing: the RunPod API keys and
// webhook URLs of the worker, and the git tokens of the builder. HF_TOKEN, CIVITAI_API_TOKEN
// and Google credentials stay: custom nodes download models with them.
func comfyEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "RUNPOD_AI_API_KEY", k == "RUNPOD_API_KEY", k == "GIT_TOKEN", k == "GITHUB_TOKEN",
			strings.HasPrefix(k, "RUNPOD_WEBHOOK_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}
