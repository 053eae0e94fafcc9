package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// repoRoot is the build context of docker/Dockerfile: the repository root.
const repoRoot = ".."

// instruction is one parsed Dockerfile instruction.
type instruction struct {
	cmd   string // lower case
	flags []string
	args  []string
	line  int
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parsing docker/Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("docker/Dockerfile:%d: %s", w.Location.Start.Line, w.Short)
	}
	var out []instruction
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToLower(n.Value), flags: n.Flags, line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		out = append(out, in)
	}
	return out
}

// TestDockerfile parses docker/Dockerfile with BuildKit's parser and checks its shape: a Go
// build stage with cgo off, a CUDA runtime stage with python3, venv, pip, git and CA
// certificates, every COPY source present in the build context, and an ENTRYPOINT that is a
// copied, executable script running `runpod-comfy serve`.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	args := map[string]string{}
	var froms []string
	copied := map[string]string{} // destination -> source in the context
	var entrypoint, cmd []string
	var runs []string
	for _, in := range ins {
		switch in.cmd {
		case "arg":
			for _, a := range in.args {
				if k, v, ok := strings.Cut(a, "="); ok {
					args[k] = v
				}
			}
		case "from":
			img := in.args[0]
			if strings.HasPrefix(img, "${") {
				img = args[strings.Trim(img, "${}")]
			}
			froms = append(froms, img)
		case "run":
			runs = append(runs, strings.Join(in.args, " "))
		case "copy", "add":
			fromStage := false
			for _, f := range in.flags {
				if strings.HasPrefix(f, "--from=") {
					fromStage = true
				}
			}
			if len(in.args) < 2 {
				t.Errorf("Dockerfile:%d: %s needs a source and a destination", in.line, in.cmd)
				continue
			}
			srcs, dst := in.args[:len(in.args)-1], in.args[len(in.args)-1]
			if fromStage {
				continue
			}
			for _, src := range srcs {
				matches, err := filepath.Glob(filepath.Join(repoRoot, src))
				if err != nil || len(matches) == 0 {
					t.Errorf("Dockerfile:%d: COPY source %q does not exist in the build context (the repository root)", in.line, src)
				}
				copied[dst] = src
			}
		case "entrypoint":
			entrypoint = in.args
		case "cmd":
			cmd = in.args
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	if !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("build stage FROM %s, want golang:1.26", froms[0])
	}
	if last := froms[len(froms)-1]; !strings.HasPrefix(last, "nvidia/cuda:") || !strings.Contains(last, "runtime") {
		t.Errorf("runtime stage FROM %s, want an nvidia/cuda runtime image", last)
	}
	all := strings.Join(runs, "\n")
	if !strings.Contains(all, "CGO_ENABLED=0 go build") || !strings.Contains(all, "./cmd/runpod-comfy") {
		t.Errorf("no CGO_ENABLED=0 go build of ./cmd/runpod-comfy in:\n%s", all)
	}
	for _, pkg := range []string{"python3", "python3-venv", "python3-pip", "git", "ca-certificates"} {
		if !strings.Contains(" "+all+" ", " "+pkg+" ") {
			t.Errorf("the runtime stage does not install %s", pkg)
		}
	}
	if len(entrypoint) != 1 {
		t.Fatalf("ENTRYPOINT %v, want one script in exec form", entrypoint)
	}
	src, ok := copied[entrypoint[0]]
	if !ok {
		t.Fatalf("ENTRYPOINT %s is not copied from the build context", entrypoint[0])
	}
	fi, err := os.Stat(filepath.Join(repoRoot, src))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 != 0o111 {
		t.Errorf("%s is not executable (mode %v)", src, fi.Mode().Perm())
	}
	// The mode bits must be committed too, or a fresh checkout builds a broken image.
	if out, err := exec.Command("git", "-C", repoRoot, "ls-files", "-s", "--", src).Output(); err == nil && len(out) > 0 {
		if !strings.HasPrefix(string(out), "100755 ") {
			t.Errorf("%s is committed without the executable bit: %s", src, out)
		}
	} else {
		t.Logf("%s: not in a git checkout (%v); only the working tree mode was checked", src, err)
	}
	if strings.Join(cmd, " ") != "serve" {
		t.Errorf("CMD %v, want [serve]", cmd)
	}
}

// TestEntrypoint runs docker/entrypoint.sh with a runpod-comfy on PATH that prints its
// arguments: no arguments run serve, flags go to serve, another command passes through.
func TestEntrypoint(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\necho \"args:$*\"\n"
	if err := os.WriteFile(filepath.Join(bin, "runpod-comfy"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "args:serve"},
		{[]string{"--version-id", "v1"}, nil, "args:serve --version-id v1"},
		{[]string{"run-ui", "v1"}, nil, "args:run-ui v1"},
		{nil, []string{"SERVE_API_LOCALLY=true"}, "args:serve --api-port 8000 --api-host 0.0.0.0"},
	} {
		cmd := exec.Command(script, c.args...)
		cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin"}, c.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("entrypoint %v: %v\n%s", c.args, err, out)
			continue
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("entrypoint %v %v: %q, want %q", c.env, c.args, got, c.want)
		}
	}
}
