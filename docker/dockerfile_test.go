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
// build stage with cgo off cross-compiling for linux/amd64, a CUDA runtime stage pinned to
// linux/amd64 with the Python of the PYTHON_VERSION build argument (venv, headers), python3,
// pip, a C toolchain, opencv's system libraries, ffmpeg, git and CA certificates, every COPY
// source present in the build context, and an ENTRYPOINT that is a copied, executable script
// running `runpod-comfy serve`.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	args := map[string]string{}
	var froms, platforms []string
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
			platform := ""
			for _, f := range in.flags {
				if v, ok := strings.CutPrefix(f, "--platform="); ok {
					platform = v
					if strings.HasPrefix(v, "${") && args[strings.Trim(v, "${}")] != "" {
						platform = args[strings.Trim(v, "${}")]
					}
				}
			}
			platforms = append(platforms, platform)
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
	if !strings.Contains(all, "CGO_ENABLED=0 ") || !strings.Contains(all, " go build ") || !strings.Contains(all, "./cmd/runpod-comfy") {
		t.Errorf("no CGO_ENABLED=0 go build of ./cmd/runpod-comfy in:\n%s", all)
	}
	for _, pkg := range []string{"python3", "python3-venv", "python3-pip", "git", "ca-certificates",
		// What custom nodes need: opencv's system libraries, ffmpeg, a C compiler and the
		// headers of the pinned Python for nodes that build extensions.
		"libgl1", "libglib2.0-0", "ffmpeg", "build-essential",
		"python${PYTHON_VERSION}", "python${PYTHON_VERSION}-venv", "python${PYTHON_VERSION}-dev"} {
		if !strings.Contains(" "+all+" ", " "+pkg+" ") {
			t.Errorf("the runtime stage does not install %s", pkg)
		}
	}
	// linux/amd64 whatever the build host: the runtime stage is pinned to it, the Go stage
	// runs natively and cross-compiles for it.
	if p := platforms[len(platforms)-1]; p != "linux/amd64" {
		t.Errorf("runtime stage --platform %q, want linux/amd64", p)
	}
	if p := platforms[0]; p != "${BUILDPLATFORM}" && p != "$BUILDPLATFORM" {
		t.Errorf("build stage --platform %q, want $BUILDPLATFORM (native, cross-compiling)", p)
	}
	if !strings.Contains(all, "GOOS=linux GOARCH=amd64") {
		t.Errorf("the Go build does not target linux/amd64:\n%s", all)
	}
	// The Python is a build argument, 3.12 by default; 3.11 comes from deadsnakes.
	if v := args["PYTHON_VERSION"]; v != "3.12" && v != "3.11" {
		t.Errorf("ARG PYTHON_VERSION default %q, want 3.11 or 3.12", v)
	}
	if !strings.Contains(all, "ppa:deadsnakes/ppa") {
		t.Error("no deadsnakes PPA for Python 3.11 on Ubuntu 24.04")
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
		{[]string{"sh", "-c", "echo kept up"}, nil, "kept up"},
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

// TestDockerfilePythonVersion runs the runtime stage's RUN script with a stand-in apt-get and
// add-apt-repository that record what they are asked for and python<version> that answers:
// 3.11 and 3.12 install that Python's packages (3.11 from deadsnakes), another version stops
// the build with a message before apt runs.
func TestDockerfilePythonVersion(t *testing.T) {
	var script string
	for _, in := range parseDockerfile(t) {
		if in.cmd == "run" && strings.Contains(strings.Join(in.args, " "), "PYTHON_VERSION") {
			script = strings.Join(in.args, " ")
		}
	}
	if script == "" {
		t.Fatal("no RUN uses PYTHON_VERSION")
	}
	for _, c := range []struct {
		version string
		ok      bool
		want    []string
		not     []string
	}{
		{"3.12", true, []string{"install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev", "libgl1", "ffmpeg"}, []string{"deadsnakes"}},
		{"3.11", true, []string{"add-apt-repository -y ppa:deadsnakes/ppa", "python3.11 python3.11-venv python3.11-dev", "build-essential"}, nil},
		{"3.10", false, nil, []string{"apt-get"}},
		{"3.11; rm -rf /", false, nil, []string{"apt-get"}},
	} {
		bin := t.TempDir()
		logf := filepath.Join(bin, "calls.log")
		rec := "#!/bin/sh\necho \"${0##*/} $*\" >> " + logf + "\n"
		for _, name := range []string{"apt-get", "add-apt-repository", "rm", "python" + c.version} {
			if strings.ContainsAny(name, "; /") {
				continue
			}
			if err := os.WriteFile(filepath.Join(bin, name), []byte(rec), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Env = []string{"PATH=" + bin, "PYTHON_VERSION=" + c.version}
		out, err := cmd.CombinedOutput()
		calls, _ := os.ReadFile(logf)
		if (err == nil) != c.ok {
			t.Errorf("PYTHON_VERSION=%s: err %v, want ok=%v\n%s", c.version, err, c.ok, out)
		}
		if !c.ok && !strings.Contains(string(out), "use 3.11 or 3.12") {
			t.Errorf("PYTHON_VERSION=%s: message %q", c.version, out)
		}
		for _, w := range c.want {
			if !strings.Contains(string(calls), w) {
				t.Errorf("PYTHON_VERSION=%s: no call with %q in:\n%s", c.version, w, calls)
			}
		}
		for _, w := range c.not {
			if strings.Contains(string(calls), w) {
				t.Errorf("PYTHON_VERSION=%s: unexpected %q in:\n%s", c.version, w, calls)
			}
		}
	}
}
