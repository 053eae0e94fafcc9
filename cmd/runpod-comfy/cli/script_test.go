package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/runpod-comfy/runpod-comfy/runner/standin"
)

// TestMain lets testscript run the runpod-comfy command in-process as a child of the test
// binary: scripts call it as "runpod-comfy".
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"runpod-comfy": func() { os.Exit(Main()) },
		"standin":      func() { os.Exit(standin.Main(os.Args[1:])) },
	})
}

// TestScripts runs the CLI end-to-end tests in testdata/script/*.txtar. Each script gets a
// fresh $WORK; ROOT is $WORK/root and git has an identity, so scripts are hermetic.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("RUNPOD_COMFY_ROOT", filepath.Join(env.WorkDir, "root"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("GIT_AUTHOR_NAME", "test")
			env.Setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
			env.Setenv("GIT_COMMITTER_NAME", "test")
			env.Setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")
			env.Setenv("NO_COLOR", "1")
			if p := os.Getenv("PATH"); p != "" {
				env.Setenv("PATH", p)
			}
			return nil
		},
	})
}
