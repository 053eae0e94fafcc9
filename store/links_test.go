package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, p string) (uint64, uint64) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ino, uint64(st.Nlink)
}

// TestLinksFromReferences: an object built with LinksFromReferences keeps hard links to the
// files of its references at the same relative path; a link to anything else (a file outside
// the store, a reference's file at another path) is broken as always, and without the option
// every link is broken.
func TestLinksFromReferences(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	pkg := mustPath(t, "test:pkg", "pkg")
	if _, err := s.Add(ctx, pkg, AddOptions{}, writeTree(map[string]string{"lib/a.py": "A\n", "lib/b.py": "B\n"})); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "user.txt")
	if err := os.WriteFile(outside, []byte("mine\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	// Canonical-looking (read-only, the store's time): only its inode tells it from a store file.
	if err := os.Chtimes(outside, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	compose := func(out string) error {
		if err := os.MkdirAll(filepath.Join(out, "lib"), 0o755); err != nil {
			return err
		}
		for _, l := range [][2]string{
			{filepath.Join(s.Abs(pkg), "lib/a.py"), "lib/a.py"}, // same place: kept
			{filepath.Join(s.Abs(pkg), "lib/b.py"), "lib/c.py"}, // another place: copied
			{outside, "user.txt"},                               // outside the store: copied
		} {
			if err := os.Link(l[0], filepath.Join(out, l[1])); err != nil {
				return err
			}
		}
		return nil
	}
	venv := mustPath(t, "test:venv", "venv")
	if _, err := s.Add(ctx, venv, AddOptions{References: []Path{pkg}, LinksFromReferences: true}, func(ctx context.Context, out string) error { return compose(out) }); err != nil {
		t.Fatal(err)
	}
	a, _ := inode(t, filepath.Join(s.Abs(pkg), "lib/a.py"))
	if got, _ := inode(t, filepath.Join(s.Abs(venv), "lib/a.py")); got != a {
		t.Errorf("lib/a.py: the link to the reference's file was broken")
	}
	for _, rel := range []string{"lib/c.py", "user.txt"} {
		if _, n := inode(t, filepath.Join(s.Abs(venv), rel)); n != 1 {
			t.Errorf("%s: still %d links", rel, n)
		}
	}
	if _, n := inode(t, outside); n != 1 {
		t.Errorf("the user's file keeps %d links", n)
	}
	other := mustPath(t, "test:venv2", "venv2")
	if _, err := s.Add(ctx, other, AddOptions{References: []Path{pkg}}, func(ctx context.Context, out string) error { return compose(out) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := inode(t, filepath.Join(s.Abs(other), "lib/a.py")); got == a {
		t.Errorf("without LinksFromReferences the link was kept")
	}
	if rep, err := s.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// TestRepairLinkedObjectsReferencesFirst: a file shared by hard link between an object and
// its reference is broken in both; verify --repair makes the reference again first, so the
// object made of its files gets the good bytes (made first, it linked the damaged ones and,
// input-addressed, was called repaired).
func TestRepairLinkedObjectsReferencesFirst(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	pkg := mustPath(t, "test:pkg", "pkg")
	// The object's path sorts before its reference's, the order that went wrong.
	var venv Path
	for i := 0; ; i++ {
		venv = mustPath(t, fmt.Sprintf("test:venv-%d", i), "venv")
		if venv.String() < pkg.String() {
			break
		}
	}
	makePkg := writeTree(map[string]string{"lib/a.py": "A\n"})
	compose := func(ctx context.Context, out string) error {
		if err := os.MkdirAll(filepath.Join(out, "lib"), 0o755); err != nil {
			return err
		}
		return os.Link(filepath.Join(s.Abs(pkg), "lib/a.py"), filepath.Join(out, "lib/a.py"))
	}
	venvOpts := AddOptions{References: []Path{pkg}, LinksFromReferences: true}
	if _, err := s.Add(ctx, pkg, AddOptions{}, makePkg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, venv, venvOpts, compose); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(s.Abs(pkg), "lib/a.py")
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shared, []byte("EVIL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(ctx, VerifyOptions{Repair: repairFunc(func(ctx context.Context, p Path, m *Meta) error {
		if p == pkg {
			_, err := s.Add(ctx, pkg, AddOptions{}, makePkg)
			return err
		}
		_, err := s.Add(ctx, venv, venvOpts, compose)
		return err
	})})
	if err != nil || len(rep.Problems) != 2 {
		t.Fatalf("verify --repair: %+v %v", rep, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Abs(venv), "lib/a.py")); err != nil || string(b) != "A\n" {
		t.Fatalf("the repaired object holds %q %v", b, err)
	}
	if rep, err := s.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after repair: %+v %v", rep, err)
	}
}
