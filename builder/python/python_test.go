package python

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// fixture is the wheels every test shares: made once per test binary.
type fixture struct {
	links string // find-links folder
	index *wheeltest.Index
	in    *Interpreter
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

var testWheels = []wheeltest.Wheel{
	{Name: "numpy", Version: "1.26.0"},
	{Name: "numpy", Version: "2.0.0"},
	{Name: "alpha", Version: "1.0", Requires: []string{"numpy<2"}},
	{Name: "beta", Version: "1.0", Requires: []string{"numpy>=2"}},
	{Name: "gamma", Version: "1.0", Requires: []string{"delta>=1"}, Scripts: map[string]string{"gamma-cli": "gamma:main"}},
	{Name: "delta", Version: "1.0"},
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "python-test-wheels-")
		if err != nil {
			fixErr = err
			return
		}
		fix.links = filepath.Join(dir, "links")
		if fixErr = wheeltest.WriteAll(fix.links, testWheels...); fixErr != nil {
			return
		}
		fix.index = wheeltest.NewIndex(fix.links)
		fix.in, fixErr = FindInterpreter(context.Background(), FindOptions{PathList: os.Getenv("PATH"), Env: os.Environ()})
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return &fix
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix.index != nil {
		fix.index.Close()
		os.RemoveAll(filepath.Dir(fix.links))
	}
	os.Exit(code)
}

// mapSource is a tree held in memory.
func mapSource(node string, files map[string]string) Source {
	return Source{Node: node, ReadFile: func(_ context.Context, name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}}
}

func TestFindInterpreter(t *testing.T) {
	f := getFixture(t)
	if f.in.Implementation != "cpython" || !strings.HasPrefix(f.in.Version, "3.") || f.in.ABI == "" || f.in.Platform == "" {
		t.Fatalf("identity incomplete: %+v", f.in.PythonIdentity)
	}
	if !filepath.IsAbs(f.in.Path) {
		t.Fatalf("path not absolute: %s", f.in.Path)
	}
	if real, _ := filepath.EvalSymlinks(f.in.Path); real != f.in.Path {
		t.Fatalf("path %s is not resolved (%s)", f.in.Path, real)
	}
	v := strings.Join(strings.Split(f.in.Version, ".")[:2], ".")
	in, err := FindInterpreter(context.Background(), FindOptions{Version: v, PathList: os.Getenv("PATH"), Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.in.PythonIdentity, in.PythonIdentity); diff != "" {
		t.Errorf("python.version %s gives another interpreter (-default +versioned):\n%s", v, diff)
	}
	if _, err := FindInterpreter(context.Background(), FindOptions{Version: "3.99", PathList: os.Getenv("PATH")}); err == nil || !strings.Contains(err.Error(), "python3.99") {
		t.Errorf("missing version: got %v", err)
	}
	in, err = FindInterpreter(context.Background(), FindOptions{ComfyPython: f.in.Path, Env: os.Environ()})
	if err != nil || in.Path != f.in.Path {
		t.Errorf("COMFY_PYTHON=%s: got %v, %v", f.in.Path, in, err)
	}
}

func TestGather(t *testing.T) {
	comfy := mapSource("", map[string]string{"requirements.txt": "torch>=2  # the base\n\n# comment\nnumpy\\\n<2\n-r extra/more.txt\n"})
	comfy.ReadFile = func(ctx context.Context, name string) ([]byte, error) {
		files := map[string]string{
			"requirements.txt": "torch>=2  # the base\n\n# comment\nnumpy\\\n<2\n-r extra/more.txt\n",
			"extra/more.txt":   "--extra-index-url https://example.org/simple\n-c pins.txt\nPillow[extra] >= 9 ; python_version >= \"3\" --hash=sha256:00\n",
			"extra/pins.txt":   "pillow<11\n",
		}
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}
	node := mapSource("A", map[string]string{"requirements.txt": "--pre\nalpha==1.0\n"})
	none := mapSource("B", map[string]string{})
	r, err := Gather(context.Background(), []Source{comfy, node, none}, &specs.Python{Packages: []string{"gamma"}, Constraints: []string{"delta<2"}})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Text, Name, Origin string }
	var got []row
	for _, q := range r.Requires {
		got = append(got, row{q.Text, q.Name, q.Origin.String()})
	}
	want := []row{
		{"torch>=2", "torch", "comfyui/requirements.txt:1"},
		{"numpy<2", "numpy", "comfyui/requirements.txt:4"},
		{`Pillow[extra] >= 9 ; python_version >= "3"`, "pillow", "comfyui/extra/more.txt:3"},
		{"alpha==1.0", "alpha", "custom_nodes/A/requirements.txt:2"},
		{"gamma", "gamma", "spec:python.packages[0]"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requires (-want +got):\n%s", diff)
	}
	var cons []string
	for _, c := range r.Constraints {
		cons = append(cons, c.Text+" @ "+c.Origin.String())
	}
	if diff := cmp.Diff([]string{"pillow<11 @ comfyui/extra/pins.txt:1", "delta<2 @ spec:python.constraints[0]"}, cons); diff != "" {
		t.Errorf("constraints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"https://example.org/simple"}, r.ExtraIndexURLs); diff != "" {
		t.Errorf("extra index URLs: %s", diff)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "custom_nodes/A/requirements.txt:1: option --pre ignored") {
		t.Errorf("warnings: %q", r.Warnings)
	}

	for _, tc := range []struct{ file, want string }{
		{"-e .\n", "custom_nodes/X/requirements.txt:1: editable requirement"},
		{"ok\nfoo @ git+https://example.org/foo.git\n", "custom_nodes/X/requirements.txt:2: \"foo @ git+https://example.org/foo.git\" is a VCS requirement"},
		{"https://example.org/x.whl\n", "custom_nodes/X/requirements.txt:1: \"https://example.org/x.whl\" is not a named requirement"},
		{"-r ../../etc/passwd\n", "points outside the tree"},
		{"-r missing.txt\n", "reading custom_nodes/X/missing.txt"},
	} {
		_, err := Gather(context.Background(), []Source{mapSource("X", map[string]string{"requirements.txt": tc.file})}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.file, err, tc.want)
		}
	}
}

func resolveWith(t *testing.T, f *fixture, srcs []Source, py *specs.Python, mod func(*ResolveOptions)) (*specs.PythonLock, error) {
	t.Helper()
	reqs, err := Gather(context.Background(), srcs, py)
	if err != nil {
		t.Fatal(err)
	}
	opts := ResolveOptions{Interpreter: f.in, Requirements: reqs, CacheDir: t.TempDir()}
	if py != nil {
		opts.IndexURL, opts.FindLinks = py.IndexURL, py.FindLinks
	}
	if mod != nil {
		mod(&opts)
	}
	return Resolve(context.Background(), opts)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	check := func(t *testing.T, lock *specs.PythonLock, urlPrefix string) {
		t.Helper()
		var got []string
		for _, p := range lock.Packages {
			if !strings.HasPrefix(p.URL, urlPrefix) || p.Filename == "" || !strings.HasSuffix(p.URL, "/"+p.Filename) {
				t.Errorf("%s: url %q filename %q", p.Name, p.URL, p.Filename)
			}
			_, sha, err := wheelByFile(p.Filename).Write(t.TempDir())
			if err != nil || sha != p.SHA256 {
				t.Errorf("%s: sha256 %s, want %s (%v)", p.Name, p.SHA256, sha, err)
			}
			got = append(got, p.Name+"=="+p.Version+" <- "+strings.Join(p.RequestedBy, ","))
		}
		want := []string{
			"alpha==1.0 <- comfyui/requirements.txt:1",
			"delta==1.0 <- ",
			"gamma==1.0 <- spec:python.packages[0]",
			"numpy==1.26.0 <- custom_nodes/A/requirements.txt:2",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("lock (-want +got):\n%s", diff)
		}
		if lock.Installer == "" || lock.Installer != f.in.Pip || lock.Interpreter != f.in.PythonIdentity {
			t.Errorf("installer %q interpreter %+v", lock.Installer, lock.Interpreter)
		}
	}
	t.Run("find-links", func(t *testing.T) { check(t, lockOf(t, f, false), "file://"+f.links+"/") })
	t.Run("index", func(t *testing.T) { check(t, lockOf(t, f, true), f.index.URL+"/files/") })
}

func wheelByFile(name string) wheeltest.Wheel {
	for _, w := range testWheels {
		if w.Filename() == name {
			return w
		}
	}
	return wheeltest.Wheel{}
}

func TestResolveConflict(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	py := &specs.Python{FindLinks: []string{f.links}}
	offline := func(o *ResolveOptions) { o.Offline = true }
	t.Run("direct", func(t *testing.T) {
		_, err := resolveWith(t, f, []Source{
			mapSource("", map[string]string{"requirements.txt": "delta\n"}),
			mapSource("A", map[string]string{"requirements.txt": "delta\n# old API\nnumpy<2\n"}),
			mapSource("B", map[string]string{"requirements.txt": "numpy>=2\n"}),
		}, py, offline)
		var re *ResolutionError
		if !errors.As(err, &re) {
			t.Fatalf("want a ResolutionError, got %v", err)
		}
		msg := err.Error()
		t.Log(msg)
		for _, want := range []string{
			"numpy:",
			`node "A" wants numpy<2 (custom_nodes/A/requirements.txt:3)`,
			`node "B" wants numpy>=2 (custom_nodes/B/requirements.txt:1)`,
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("report lacks %q:\n%s", want, msg)
			}
		}
		if strings.Contains(msg, "runpod-comfy-resolve-") {
			t.Errorf("report names the temporary requirements file:\n%s", msg)
		}
	})
	t.Run("via dependencies", func(t *testing.T) {
		_, err := resolveWith(t, f, []Source{
			mapSource("A", map[string]string{"requirements.txt": "alpha\n"}),
			mapSource("B", map[string]string{"requirements.txt": "\nbeta\n"}),
		}, py, offline)
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		t.Log(msg)
		for _, want := range []string{
			`node "A" wants alpha (custom_nodes/A/requirements.txt:1), and alpha 1.0 depends on numpy<2`,
			`node "B" wants beta (custom_nodes/B/requirements.txt:2), and beta 1.0 depends on numpy>=2`,
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("report lacks %q:\n%s", want, msg)
			}
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := resolveWith(t, f, []Source{mapSource("C", map[string]string{"requirements.txt": "numpy==3.0\n"})}, py, offline)
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		t.Log(msg)
		for _, want := range []string{"no file satisfies numpy==3.0", "1.26.0, 2.0.0", `node "C" wants numpy==3.0 (custom_nodes/C/requirements.txt:1)`} {
			if !strings.Contains(msg, want) {
				t.Errorf("report lacks %q:\n%s", want, msg)
			}
		}
	})
}

// runPy runs a venv's python (or an entry script) and returns its output.
func runPy(t *testing.T, exe string, args ...string) string {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", exe, args, err, out)
	}
	return string(out)
}

func TestCheckPip(t *testing.T) {
	for _, tc := range []struct{ pip, want string }{
		{"pip 23.2.1", ""},
		{"pip 22.3", ""},
		{"pip 24.0", ""},
		{"pip 22.2.2", "pip 22.3 or newer is needed"},
		{"pip 9.0.1", "pip 22.3 or newer is needed"},
		{"", "has no pip"},
	} {
		err := checkPip(&Interpreter{PythonIdentity: specs.PythonIdentity{Path: "/usr/bin/python3"}, Pip: tc.pip})
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.pip, err, tc.want)
		}
	}
}

// TestExplain reads pip's output for a conflict through a dependency with extras and for a
// spec constraint.
func TestExplain(t *testing.T) {
	requires := []Requirement{
		{Text: "alpha[fast]>=1", Name: "alpha", Origin: Origin{Node: "A", File: "custom_nodes/A/requirements.txt", Line: 4}},
		{Text: "numpy>=2", Name: "numpy", Origin: Origin{Node: "B", File: "custom_nodes/B/requirements.txt", Line: 1}},
	}
	constraints := []Requirement{{Text: "numpy<3", Name: "numpy", Origin: Origin{File: fileSpec, Field: "python.constraints[0]"}}}
	out := `ERROR: Cannot install -r /tmp/x/requirements.txt (line 1) and -r /tmp/x/requirements.txt (line 2) because these package versions have conflicting dependencies.

The conflict is caused by:
    alpha[fast] 1.0 depends on numpy<2
    The user requested numpy>=2
    The user requested (constraint) numpy<3

To fix this you could try to:
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io
`
	err := explain(out, requires, constraints, "/tmp/x/requirements.txt", "/tmp/x/constraints.txt")
	want := `resolving Python requirements failed: requirements conflict
  numpy:
    node "A" wants alpha[fast]>=1 (custom_nodes/A/requirements.txt:4), and alpha[fast] 1.0 depends on numpy<2
    node "B" wants numpy>=2 (custom_nodes/B/requirements.txt:1)
    the spec constrains to numpy<3 (spec:python.constraints[0])
  pip said:
    Cannot install custom_nodes/A/requirements.txt:4 and custom_nodes/B/requirements.txt:1 because these package versions have conflicting dependencies.`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}
