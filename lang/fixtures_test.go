package lang

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

var update = flag.Bool("update", false, "rewrite the expected diagnostics and want.json of lang/testdata/*.txtar")

// fixture is one lang/testdata/*.txtar case. Its comment holds the header lines
//
//	schema: accept|reject   what specs/schema/v2.json says about the JSON spec (JSON fixtures)
//	load: <file>             the spec to load (default: the first file)
//	vars: k=v k=v            --var overrides
//
// followed by the expected diagnostics, one a line, exactly as Diagnostic.String prints them
// with paths relative to the fixture. A valid spec's evaluated form is in want.json.
type fixture struct {
	path     string
	ar       *txtar.Archive
	header   []string
	schema   string
	load     string
	vars     map[string]string
	want     []string
	wantJSON []byte
}

func readFixtures(t *testing.T) []*fixture {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no fixtures in testdata")
	}
	var out []*fixture
	for _, p := range paths {
		ar, err := txtar.ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f := &fixture{path: p, ar: ar}
		for _, line := range strings.Split(string(ar.Comment), "\n") {
			switch {
			case strings.HasPrefix(line, "schema: "):
				f.schema = strings.TrimPrefix(line, "schema: ")
				f.header = append(f.header, line)
			case strings.HasPrefix(line, "load: "):
				f.load = strings.TrimPrefix(line, "load: ")
				f.header = append(f.header, line)
			case strings.HasPrefix(line, "vars: "):
				f.vars = map[string]string{}
				for _, kv := range strings.Fields(strings.TrimPrefix(line, "vars: ")) {
					k, v, _ := strings.Cut(kv, "=")
					f.vars[k] = v
				}
				f.header = append(f.header, line)
			case strings.HasPrefix(line, "#"):
				f.header = append(f.header, line)
			case strings.TrimSpace(line) != "":
				f.want = append(f.want, line)
			}
		}
		var files []txtar.File
		for _, af := range ar.Files {
			if af.Name == "want.json" {
				f.wantJSON = af.Data
				continue
			}
			files = append(files, af)
		}
		if f.load == "" {
			f.load = files[0].Name
		}
		out = append(out, f)
	}
	return out
}

// materialise writes the fixture's spec files into a fresh directory.
func (f *fixture) materialise(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, af := range f.ar.Files {
		if af.Name == "want.json" {
			continue
		}
		p := filepath.Join(dir, af.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, af.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFixtures loads every fixture and compares the diagnostics (text and position) and, for a
// valid spec, its evaluated JSON with what the fixture expects.
func TestFixtures(t *testing.T) {
	for _, f := range readFixtures(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f.path), ".txtar"), func(t *testing.T) {
			dir := f.materialise(t)
			var s *specs.Spec
			var diags Diagnostics
			var err error
			if filepath.Ext(f.load) == "" {
				s, diags, err = LoadVersion(context.Background(), dir, f.load, Options{Vars: f.vars})
			} else {
				s, diags, err = LoadFile(context.Background(), filepath.Join(dir, f.load), Options{Vars: f.vars, VersionsDir: dir})
			}
			var got []string
			for _, d := range diags {
				d.Pos.File = strings.TrimPrefix(d.Pos.File, dir+string(filepath.Separator))
				line := strings.ReplaceAll(d.String(), dir+string(filepath.Separator), "")
				got = append(got, strings.ReplaceAll(line, dir, "$DIR"))
			}
			if diags.HasErrors() != (err != nil) {
				t.Errorf("HasErrors %v but err %v", diags.HasErrors(), err)
			}
			if err != nil {
				if _, ok := err.(*SpecError); !ok {
					t.Fatalf("error %T is not a *SpecError: %v", err, err)
				}
				if !err.(*SpecError).InvalidSpec() {
					t.Error("InvalidSpec() is false")
				}
			}
			var gotJSON []byte
			if s != nil {
				checkPositions(t, s)
				gotJSON, err = FormatJSON(s)
				if err != nil {
					t.Fatal(err)
				}
			}
			if *update {
				f.rewrite(t, got, gotJSON)
				return
			}
			if diff := cmp.Diff(f.want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(string(f.wantJSON), string(gotJSON)); diff != "" {
				t.Errorf("evaluated spec (-want +got):\n%s", diff)
			}
		})
	}
}

// checkPositions asserts that every part of a loaded spec carries its position.
func checkPositions(t *testing.T, s *specs.Spec) {
	t.Helper()
	if s.Pos.File == "" || s.Comfy.Pos.Line == 0 {
		t.Errorf("spec or comfy without position: %+v %+v", s.Pos, s.Comfy.Pos)
	}
	for _, n := range s.CustomNodes {
		if n.Pos.Line == 0 || n.Name == "" {
			t.Errorf("node %q without position or name", n.Repo)
		}
	}
	for _, m := range s.Models {
		if m.Pos.Line == 0 {
			t.Errorf("model %q without position", m.Source)
		}
	}
	if s.Python != nil && s.Python.Pos.Line == 0 {
		t.Error("python without position")
	}
}

func (f *fixture) rewrite(t *testing.T, got []string, gotJSON []byte) {
	var b bytes.Buffer
	for _, h := range f.header {
		b.WriteString(h + "\n")
	}
	for _, g := range got {
		b.WriteString(g + "\n")
	}
	f.ar.Comment = b.Bytes()
	var files []txtar.File
	for _, af := range f.ar.Files {
		if af.Name != "want.json" {
			files = append(files, af)
		}
	}
	if gotJSON != nil {
		files = append(files, txtar.File{Name: "want.json", Data: gotJSON})
	}
	f.ar.Files = files
	if err := os.WriteFile(f.path, txtar.Format(f.ar), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFixturesCoverRules makes sure every rule of the issue has a fixture.
func TestFixturesCoverRules(t *testing.T) {
	var names []string
	for _, f := range readFixtures(t) {
		names = append(names, strings.TrimSuffix(filepath.Base(f.path), ".txtar"))
	}
	sort.Strings(names)
	for _, want := range []string{
		"quirk-branch-in-commit", "quirk-target-dir", "quirk-models-dir", "quirk-comfy-python",
		"reject-unknown-field", "reject-empty-model", "reject-model-no-source", "reject-bad-checksum",
		"reject-shared-node-dir", "reject-shared-model-target", "reject-target-escapes",
		"quirk-version-id-mismatch", "reject-version-id-ambiguous", "reject-version-id-claimed-twice",
		"seed-find-by-version-id", "quirk-seed-spec", "hcl-seed-quirks", "reject-seed-aliases", "reject-git-url-scheme", "reject-schema-version",
		"hcl-extends", "hcl-extends-cycle", "hcl-impure-function", "hcl-variables",
	} {
		i := sort.SearchStrings(names, want)
		if i == len(names) || names[i] != want {
			t.Errorf("no fixture %s.txtar", want)
		}
	}
}
