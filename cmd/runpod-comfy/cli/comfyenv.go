package cli

import (
	"os"
	"strings"
)

// PassEnvVar names the setting that lets ComfyUI see variables comfyEnviron removes: names
// separated by commas or spaces, a trailing "*" matching a prefix ("GCS_*").
const PassEnvVar = "RUNPOD_COMFY_PASS_ENV"

// comfyEnviron is the base environment ComfyUI runs with: this process's, less the
// credentials and settings that runpod-comfy itself uses and ComfyUI has no business seeing:
//
//   - the worker's RunPod API keys and webhook URLs (RUNPOD_AI_API_KEY, RUNPOD_API_KEY,
//     RUNPOD_WEBHOOK_*);
//   - the builder's git tokens (GIT_TOKEN, GITHUB_TOKEN, GIT_TOKENS);
//   - the output sinks' credentials and settings: Google's (GOOGLE_APPLICATION_CREDENTIALS,
//     GCS_*: GCS_CREDENTIALS_JSON holds a key) and the S3 bucket's keys (BUCKET_ACCESS_KEY_ID,
//     BUCKET_SECRET_ACCESS_KEY, BUCKET_SESSION_TOKEN);
//   - the worker's Comfy.org key (COMFY_ORG_API_KEY): it goes to ComfyUI per job, in the
//     prompt's extra_data, as worker-comfyui does, not through the environment;
//   - runpod-comfy's own settings (RUNPOD_COMFY_*: substituter URLs may carry credentials).
//
// A variable named in $RUNPOD_COMFY_PASS_ENV stays. HF_TOKEN, CIVITAI_API_TOKEN and
// CIVITAI_TOKEN stay: custom nodes download models with them.
func comfyEnviron() []string {
	return filterComfyEnviron(os.Environ(), os.Getenv(PassEnvVar))
}

func filterComfyEnviron(environ []string, pass string) []string {
	passes := strings.FieldsFunc(pass, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	passed := func(k string) bool {
		for _, p := range passes {
			if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(k, pre) || p == k {
				return true
			}
		}
		return false
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if withheldFromComfy(k) && !passed(k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// withheldFromComfy reports whether comfyEnviron removes the variable k by default.
func withheldFromComfy(k string) bool {
	switch k {
	case "RUNPOD_AI_API_KEY", "RUNPOD_API_KEY",
		"GIT_TOKEN", "GITHUB_TOKEN", "GIT_TOKENS",
		"GOOGLE_APPLICATION_CREDENTIALS",
		"BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "BUCKET_SESSION_TOKEN",
		"COMFY_ORG_API_KEY":
		return true
	}
	for _, p := range []string{"RUNPOD_WEBHOOK_", "GCS_", "RUNPOD_COMFY_"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
