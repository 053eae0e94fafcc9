package store

import (
	"context"
	"os"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// TestAddKnownNar: the NAR hash a MakeKnownFunc returns with what it made is registered
// without the store reading the file again, but only when it fits the output (a single
// non-executable file of that NAR size); otherwise the store hashes the output itself.
func TestAddKnownNar(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	content := []byte("Hello, World!\n")
	// A hash the file does not have, of the right size: registered as given, which shows the
	// store took it from the build's result instead of reading the file.
	const claimed = "sha256:0000000000000000000000000000000000000000000000000000"
	build := func(known KnownNar, mode os.FileMode) MakeKnownFunc {
		return func(ctx context.Context, out string) (KnownNar, error) {
			if err := os.WriteFile(out, content, mode); err != nil {
				return KnownNar{}, err
			}
			return known, os.Chmod(out, mode)
		}
	}
	cases := []struct {
		name    string
		known   KnownNar
		mode    os.FileMode
		trusted bool
	}{
		{"fits", KnownNar{claimed, nar.FileNarSize(14, false)}, 0o444, true},
		{"wrong-size", KnownNar{claimed, nar.FileNarSize(17, false)}, 0o444, false},
		{"executable", KnownNar{claimed, nar.FileNarSize(14, false)}, 0o555, false},
		{"none", KnownNar{}, 0o444, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := PathFor("test:knownnar:"+c.name, "hello")
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.AddKnown(ctx, p, AddOptions{Kind: "test"}, build(c.known, c.mode))
			if err != nil {
				t.Fatal(err)
			}
			real, realSize, err := nar.Hash(s.Abs(p))
			if err != nil {
				t.Fatal(err)
			}
			if c.trusted {
				if m.NarHash != claimed {
					t.Fatalf("registered %s, want the build's %s", m.NarHash, claimed)
				}
				return
			}
			if m.NarHash != real || m.NarSize != realSize {
				t.Fatalf("registered %s %d, the file's NAR is %s %d", m.NarHash, m.NarSize, real, realSize)
			}
		})
	}
}
