package drv

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store"
)

type params struct {
	A string            `json:"a"`
	M map[string]string `json:"m"`
}

func sealed(t *testing.T, d *Derivation) *Derivation {
	t.Helper()
	if err := d.Seal(); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSealInputAddressed(t *testing.T) {
	in := sealed(t, &Derivation{Kind: KindGit, Name: "src", Version: 1, Params: params{A: "x"},
		Fixed: &Fixed{Fingerprint: store.GitFingerprint(strings.Repeat("a", 40), false, "src")}})
	mk := func(version int, p params, inputs ...*Derivation) *Derivation {
		return sealed(t, &Derivation{Kind: KindRoot, Name: "comfy-x", Version: version, Params: p, Inputs: inputs})
	}
	base := mk(1, params{A: "1", M: map[string]string{"b": "2", "a": "1"}}, in)
	same := mk(1, params{A: "1", M: map[string]string{"a": "1", "b": "2"}}, in)
	if base.Path != same.Path || string(base.CanonicalJSON()) != string(same.CanonicalJSON()) {
		t.Errorf("same derivation, different paths: %s %s", base.Path, same.Path)
	}
	for name, other := range map[string]*Derivation{
		"params":  mk(1, params{A: "2", M: map[string]string{"a": "1", "b": "2"}}, in),
		"version": mk(2, params{A: "1", M: map[string]string{"a": "1", "b": "2"}}, in),
		"inputs":  mk(1, params{A: "1", M: map[string]string{"a": "1", "b": "2"}}),
	} {
		if other.Path == base.Path {
			t.Errorf("changing %s kept the path %s", name, base.Path)
		}
	}
	if refs := base.References(); len(refs) != 1 || refs[0] != in.Path {
		t.Errorf("references %v, want [%s]", refs, in.Path)
	}
	if base.Path.Name() != "comfy-x" {
		t.Errorf("name %q", base.Path.Name())
	}
}

func TestSealFixedIgnoresParams(t *testing.T) {
	fp := store.GitFingerprint(strings.Repeat("b", 40), true, "node")
	a := sealed(t, &Derivation{Kind: KindGit, Name: "node", Params: params{A: "https://a/x.git"}, Fixed: &Fixed{Fingerprint: fp}})
	b := sealed(t, &Derivation{Kind: KindGit, Name: "node", Params: params{A: "https://mirror/x.git"}, Fixed: &Fixed{Fingerprint: fp}})
	want, _ := store.PathFor(fp, "node")
	if a.Path != want || b.Path != want {
		t.Errorf("fixed paths %s %s, want %s", a.Path, b.Path, want)
	}
}

func TestSealNeedsSealedInputs(t *testing.T) {
	in := &Derivation{Kind: KindPython, Name: "python"}
	d := &Derivation{Kind: KindVenv, Name: "venv", Inputs: []*Derivation{in}}
	if err := d.Seal(); err == nil || !strings.Contains(err.Error(), "not sealed") {
		t.Errorf("want a not-sealed error, got %v", err)
	}
}

func TestLimit(t *testing.T) {
	var running, peak atomic.Int32
	b := Limit(BuilderFunc(func(ctx context.Context, bc *BuildContext, d *Derivation, out string) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return nil
	}), 2)
	done := make(chan error)
	for i := 0; i < 6; i++ {
		go func() { done <- b.Build(context.Background(), &BuildContext{}, &Derivation{}, "") }()
	}
	for i := 0; i < 6; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p > 2 || p == 0 {
		t.Errorf("peak concurrency %d, want at most 2", p)
	}
}
