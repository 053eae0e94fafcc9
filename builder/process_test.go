package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// TestMain lets tests re-execute the test binary as a build process: with
// BUILDER_TEST_CHILD=<spec json file> and BUILDER_TEST_ROOT=<ROOT> it builds and prints the
// BuildResult as JSON.
func TestMain(m *testing.M) {
	if specFile := os.Getenv("BUILDER_TEST_CHILD"); specFile != "" {
		os.Exit(childBuild(specFile, os.Getenv("BUILDER_TEST_ROOT")))
	}
	os.Exit(m.Run())
}

func childBuild(specFile, root string) int {
	b, err := os.ReadFile(specFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// SIGTERM cancels the build, as the CLI's signal.NotifyContext does.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	res, err := Build(ctx, BuildOptions{Root: root, Spec: &spec, Jobs: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// buildProcess starts the test binary as a build of spec into root.
func buildProcess(t *testing.T, spec *specs.Spec, root string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	sf := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(sf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BUILDER_TEST_CHILD="+sf, "BUILDER_TEST_ROOT="+root)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr
}

// bigNode adds a custom node of many files to spec, so that building it takes a while.
func bigNode(t *testing.T, f *fixture, spec *specs.Spec) {
	files := map[string]string{}
	for i := 0; i < 800; i++ {
		files[fmt.Sprintf("d%02d/f%04d.py", i%30, i)] = strings.Repeat(fmt.Sprintf("# %d\n", i), 200)
	}
	dir := filepath.Join(f.dir, "big")
	c := newRepo(t, dir, files)
	spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: "big", Repo: dir, Commit: c})
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countFiles(dir, suffix string) int {
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			n++
		}
	}
	return n
}

// leaseWritten reports whether a build lease with its record exists. (A kill between the
// lease file's creation and its write leaves an empty lease, which the store only judges stale
// after its TTL, minutes later; the test avoids that window so it stays fast.)
func leaseWritten(dir string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".lease") {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
	}
	return false
}

func TestKill9DuringBuild(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("crash")
	bigNode(t, f, spec)
	root := filepath.Join(t.TempDir(), "root")
	locks := filepath.Join(root, "store", ".locks")
	meta := filepath.Join(root, "store", ".meta")

	// Kill once while the first objects are being built, once after some are registered.
	for i, point := range []struct {
		what string
		cond func() bool
	}{
		{"a build lease", func() bool { return leaseWritten(locks) }},
		{"a registered object", func() bool { return countFiles(meta, ".json") > 0 && leaseWritten(locks) }},
	} {
		cmd, _, stderr := buildProcess(t, spec, root)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var err error
		done := false
		waitFor(t, point.what, func() bool {
			select {
			case err = <-exited:
				done = true
			default:
			}
			return done || point.cond()
		})
		if !done {
			cmd.Process.Signal(syscall.SIGKILL)
			err = <-exited
		}
		if err == nil {
			t.Logf("kill %d: the child finished before the kill (%s)", i, stderr)
		}
		t.Logf("kill %d at %s done", i, point.what)
	}

	t.Log("rebuilding")
	// Build again: the stale leases of the dead process are broken and the build succeeds.
	res, err := Build(context.Background(), BuildOptions{Root: root, Spec: spec})
	if err != nil {
		t.Fatalf("build after kill -9: %v", err)
	}
	for _, n := range res.Nodes {
		if !n.OK {
			t.Errorf("%s: %s", n.Name, n.Problem)
		}
	}
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(context.Background(), store.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 || rep.Checked < 5 {
		t.Errorf("store verify after kill -9: checked %d, problems %+v", rep.Checked, rep.Problems)
	}
}

func TestTwoBuildProcessesAtOnce(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("twice")
	bigNode(t, f, spec)
	root := filepath.Join(t.TempDir(), "root")
	type out struct {
		cmd            *exec.Cmd
		stdout, stderr *bytes.Buffer
	}
	var procs []out
	for i := 0; i < 2; i++ {
		cmd, so, se := buildProcess(t, spec, root)
		procs = append(procs, out{cmd, so, se})
	}
	built := 0
	var roots []string
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("build process %d: %v\n%s", i, err, p.stderr)
		}
		var res BuildResult
		if err := json.Unmarshal(p.stdout.Bytes(), &res); err != nil {
			t.Fatalf("process %d output %q: %v", i, p.stdout, err)
		}
		built += res.Built
		roots = append(roots, res.Root.String())
	}
	// comfyui, node-a, node-b, big and the root: each built by exactly one of the two.
	if built != 5 {
		t.Errorf("objects built in total: %d, want 5 (each once)", built)
	}
	if roots[0] != roots[1] {
		t.Errorf("the processes made different roots: %v", roots)
	}
}
