package cli

import (
	"strings"
	"testing"
)

func TestComfyEnvironDropsOurCredentials(t *testing.T) {
	secrets := map[string]string{
		"RUNPOD_AI_API_KEY":              "secret-1",
		"RUNPOD_WEBHOOK_GET_JOB":         "https://api.example/job-take/$ID",
		"GIT_TOKEN":                      "secret-2",
		"GITHUB_TOKEN":                   "secret-3",
		"GIT_TOKENS":                     "github.com=secret-4",
		"GOOGLE_APPLICATION_CREDENTIALS": "/secrets/sa-5.json",
		"GCS_CREDENTIALS_JSON":           `{"private_key":"secret-6"}`,
		"GCS_BUCKET":                     "bucket-7",
		"COMFY_ORG_API_KEY":              "secret-8",
		"BUCKET_SECRET_ACCESS_KEY":       "secret-9",
		"RUNPOD_COMFY_SUBSTITUTERS":      "https://u:secret-10@cache.example",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("HF_TOKEN", "kept-for-nodes")
	t.Setenv("CIVITAI_API_TOKEN", "kept-civitai")
	t.Setenv(PassEnvVar, "")
	env := strings.Join(comfyEnviron(), "\n")
	for k, v := range secrets {
		if strings.Contains(env, v) || strings.Contains(env, k+"=") {
			t.Errorf("ComfyUI's environment holds %s", k)
		}
	}
	for _, kv := range []string{"HF_TOKEN=kept-for-nodes", "CIVITAI_API_TOKEN=kept-civitai"} {
		if !strings.Contains(env, kv) {
			t.Errorf("%s was dropped; custom nodes need it", kv)
		}
	}

	// The setting passes named variables and prefixes through, and nothing else.
	t.Setenv(PassEnvVar, "GOOGLE_APPLICATION_CREDENTIALS, GCS_*")
	env = strings.Join(comfyEnviron(), "\n")
	for _, kv := range []string{"GOOGLE_APPLICATION_CREDENTIALS=/secrets/sa-5.json", "GCS_BUCKET=bucket-7", "GCS_CREDENTIALS_JSON="} {
		if !strings.Contains(env, kv) {
			t.Errorf("%s=%s: %s not passed", PassEnvVar, "GOOGLE_APPLICATION_CREDENTIALS, GCS_*", kv)
		}
	}
	for _, s := range []string{"secret-1", "secret-2", "secret-8", "secret-9"} {
		if strings.Contains(env, s) {
			t.Errorf("with a pass setting, ComfyUI's environment still holds %q", s)
		}
	}
}
