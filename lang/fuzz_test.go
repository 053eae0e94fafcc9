package lang

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// seedSpecs adds the fixtures' and examples' spec files of one suffix as fuzz seeds.
func seedSpecs(f *testing.F, suffix string) {
	paths, _ := filepath.Glob("../versions/*" + suffix)
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	paths, _ = filepath.Glob("testdata/*.txtar")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, part := range strings.Split(string(data), "\n-- ") {
			name, body, ok := strings.Cut(part, " --\n")
			if ok && strings.HasSuffix(name, suffix) && name != "want.json" {
				f.Add([]byte(body))
			}
		}
	}
}

// roundTrip checks that a valid spec written out in both languages reads back with the same
// hash.
func roundTrip(t *testing.T, s *specs.Spec) {
	t.Helper()
	want := specs.Hash(s)
	dir := t.TempDir()
	for _, w := range []struct {
		ext    string
		format func(*specs.Spec) ([]byte, error)
	}{{".json", FormatJSON}, {".hcl", FormatHCL}} {
		data, err := w.format(s)
		if err != nil {
			t.Fatalf("formatting %s: %v", w.ext, err)
		}
		p := filepath.Join(dir, s.VersionID+w.ext)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		back, _, err := LoadFile(context.Background(), p, Options{})
		if err != nil {
			t.Fatalf("reading back %s:\n%s\n%v", w.ext, data, err)
		}
		if got := specs.Hash(back); got != want {
			t.Fatalf("round trip through %s changed the spec:\n%s\nwant %s\ngot  %s", w.ext, data, specs.CanonicalJSON(s), specs.CanonicalJSON(back))
		}
	}
}

func fuzzLoad(t *testing.T, name string, data []byte) {
	s, diags, err := LoadBytes(context.Background(), name, data, Options{VersionsDir: t.TempDir()})
	if (err != nil) != diags.HasErrors() && err != nil && !strings.Contains(err.Error(), "could not be read") {
		t.Fatalf("error %v but diagnostics %v", err, diags)
	}
	for _, d := range diags {
		if d.Message == "" {
			t.Fatalf("empty diagnostic message: %+v", d)
		}
	}
	if err == nil {
		if s == nil {
			t.Fatal("no error and no spec")
		}
		roundTrip(t, s)
	}
}

// FuzzLoadJSON: no input makes the JSON reader panic, and every spec it accepts survives a
// round trip through FormatJSON and FormatHCL with the same hash.
func FuzzLoadJSON(f *testing.F) {
	seedSpecs(f, ".json")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, "x.json", data) })
}

// FuzzLoadHCL is FuzzLoadJSON for the HCL reader.
func FuzzLoadHCL(f *testing.F) {
	seedSpecs(f, ".hcl")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, "x.hcl", data) })
}

// TestRoundTripFixtures runs the round trip over every valid fixture and example.
func TestRoundTripFixtures(t *testing.T) {
	n := 0
	for _, f := range readFixtures(t) {
		if f.wantJSON == nil {
			continue
		}
		dir := f.materialise(t)
		var s *specs.Spec
		var err error
		if filepath.Ext(f.load) == "" {
			s, _, err = LoadVersion(context.Background(), dir, f.load, Options{Vars: f.vars})
		} else {
			s, _, err = LoadFile(context.Background(), filepath.Join(dir, f.load), Options{Vars: f.vars, VersionsDir: dir})
		}
		if err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
		roundTrip(t, s)
		n++
	}
	paths, _ := filepath.Glob("../versions/*")
	for _, p := range paths {
		s, _, err := LoadFile(context.Background(), p, Options{VersionsDir: "../versions"})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		roundTrip(t, s)
		n++
	}
	if n < 8 {
		t.Errorf("only %d specs round-tripped", n)
	}
}
