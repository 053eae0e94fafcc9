package cli

import (
	"strings"
	"testing"
)

func TestComfyEnvironDropsOurCredentials(t *testing.T) {
	t.Setenv("RUNPOD_AI_API_KEY", "secret-1")
	t.Setenv("RUNPOD_WEBHOOK_GET_JOB", "https://api.example/job-take/$ID")
	t.Setenv("GIT_TOKEN", "secret-2")
	t.Setenv("GITHUB_TOKEN", "secret-3")
	t.Setenv("HF_TOKEN", "kept-for-nodes")
	env := strings.Join(comfyEnviron(), "\n")
	for _, s := range []string{"secret-1", "job-take", "secret-2", "secret-3"} {
		if strings.Contains(env, s) {
			t.Errorf("ComfyUI's environment holds %q", s)
		}
	}
	if !strings.Contains(env, "HF_TOKEN=kept-for-nodes") {
		t.Error("HF_TOKEN was dropped; custom nodes need it")
	}
}
