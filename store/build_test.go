package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), WithLeaseTTL(2*time.Second), WithClockSkew(0), WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeTree(files map[string]string) MakeFunc {
	return func(ctx context.Context, out string) error {
		for name, content := range files {
			p := filepath.Join(out, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if strings.HasSuffix(name, ".sh") {
				mode = 0o4755 // setuid must be cleared
			}
			if strings.HasPrefix(content, "->") {
				if err := os.Symlink(content[2:], p); err != nil {
					return err
				}
				continue
			}
			if err := os.WriteFile(p, []byte(content), mode); err != nil {
				return err
			}
			os.Chmod(p, mode)
		}
		return nil
	}
}

func mustPath(t *testing.T, fp, name string) Path {
	t.Helper()
	p, err := PathFor(fp, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildCanonicalisesAndRegisters(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	p := mustPath(t, DrvFingerprint("01", "tree"), "tree")
	if s.Valid(p) {
		t.Fatal("valid before build")
	}
	if _, err := s.Meta(p); !errors.Is(err, ErrNotValid) {
		t.Fatalf("Meta before build: %v", err)
	}
	m, err := s.Add(ctx, p, AddOptions{Kind: "test"}, writeTree(map[string]string{
		"a.txt":       "a",
		"bin/run.sh":  "#!/bin/sh\n",
		"sub/link":    "->../a.txt",
		"sub/abs-out": "->/usr/bin/python3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Valid(p) || m.Path != p || m.Source != "built" || m.Kind != "test" || m.References == nil {
		t.Fatalf("meta %+v", m)
	}
	h, n, err := nar.Hash(s.Abs(p))
	if err != nil || h != m.NarHash || n != m.NarSize {
		t.Fatalf("meta hash %s %d, disk %s %d %v", m.NarHash, m.NarSize, h, n, err)
	}
	check := map[string]os.FileMode{"": 0o555, "a.txt": 0o444, "bin": 0o555, "bin/run.sh": 0o555, "sub": 0o555}
	for rel, want := range check {
		fi, err := os.Lstat(filepath.Join(s.Abs(p), rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSetuid); got != want {
			t.Errorf("%s mode %v, want %v", rel, got, want)
		}
		if fi.ModTime().Unix() != 1 {
			t.Errorf("%s mtime %v", rel, fi.ModTime())
		}
	}
	// Building again returns the registered object without calling build.
	m2, err := s.Add(ctx, p, AddOptions{}, func(ctx context.Context, out string) error {
		t.Fatal("build called for a valid object")
		return nil
	})
	if err != nil || m2.NarHash != m.NarHash {
		t.Fatal(err)
	}
	// Nothing left in staging.
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".tmp")); len(ents) != 0 {
		t.Errorf("staging not cleaned: %v", ents)
	}
}

func TestBuildRejects(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cases := map[string]MakeFunc{
		"absolute symlink into the store":  writeTree(map[string]string{"l": "->" + s.Dir() + "/x"}),
		"relative target leaves the store": writeTree(map[string]string{"l": "->../../../etc/passwd"}),
		"NAR hash mismatch":                writeTree(map[string]string{"a": "a"}),
		"boom":                             func(ctx context.Context, out string) error { return errors.New("boom") },
		"made nothing":                     func(ctx context.Context, out string) error { return nil },
	}
	for want, fn := range cases {
		for _, atFinal := range []bool{false, true} {
			p := mustPath(t, DrvFingerprint(want, "x"), "x")
			_, err := s.Add(ctx, p, AddOptions{AtFinalPath: atFinal, ExpectNarHash: "sha256:0000000000000000000000000000000000000000000000000000"}, fn)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s (at final %v): err = %v", want, atFinal, err)
			}
			if s.Valid(p) {
				t.Errorf("%s: registered after failure", want)
			}
			if _, err := os.Lstat(s.Abs(p)); err == nil {
				t.Errorf("%s (at final %v): object left at the final path", want, atFinal)
			}
		}
	}
	// A reference must be valid.
	p := mustPath(t, DrvFingerprint("r", "r"), "r")
	missing := mustPath(t, DrvFingerprint("missing", "m"), "m")
	if _, err := s.Add(ctx, p, AddOptions{References: []Path{missing}}, writeTree(map[string]string{"a": "a"})); err == nil || !strings.Contains(err.Error(), "not a valid store object") {
		t.Errorf("invalid reference: %v", err)
	}
}

func TestBuildAtFinalPathReplacesDebris(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	p := mustPath(t, DrvFingerprint("v", "venv"), "venv")
	os.MkdirAll(filepath.Join(s.Abs(p), "junk"), 0o755)
	var sawOut string
	_, err := s.Add(ctx, p, AddOptions{AtFinalPath: true, Kind: "venv"}, func(ctx context.Context, out string) error {
		sawOut = out
		if _, err := os.Lstat(out); err == nil {
			t.Error("debris still at the final path")
		}
		return writeTree(map[string]string{"pyvenv.cfg": "home = /usr/bin\n"})(ctx, out)
	})
	if err != nil {
		t.Fatal(err)
	}
	if sawOut != s.Abs(p) {
		t.Errorf("out = %s, want %s", sawOut, s.Abs(p))
	}
	if _, err := os.Stat(filepath.Join(s.Abs(p), "junk")); err == nil {
		t.Error("debris kept")
	}
}

func TestBuildBreaksHardLinksAndSingleFile(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	p := mustPath(t, DrvFingerprint("h", "h"), "h")
	_, err := s.Add(ctx, p, AddOptions{}, func(ctx context.Context, out string) error {
		os.Mkdir(out, 0o755)
		os.WriteFile(filepath.Join(out, "a"), []byte("x"), 0o644)
		return os.Link(filepath.Join(out, "a"), filepath.Join(out, "b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(s.Abs(p), "a"))
	b, _ := os.Stat(filepath.Join(s.Abs(p), "b"))
	if os.SameFile(a, b) {
		t.Error("hard link kept")
	}
	f := mustPath(t, FixedFingerprint("sha256", "c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31", "hello.txt"), "hello.txt")
	m, err := s.Add(ctx, f, AddOptions{Kind: "model", ExpectNarHash: "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60"}, func(ctx context.Context, out string) error {
		return os.WriteFile(out, []byte(hello), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.NarSize != 128 {
		t.Errorf("nar size %d", m.NarSize)
	}
}

func TestSubstituteWithRestore(t *testing.T) {
	src := openTest(t)
	dst := openTest(t)
	ctx := context.Background()
	p := mustPath(t, DrvFingerprint("sub", "tree"), "tree")
	m, err := src.Add(ctx, p, AddOptions{}, writeTree(map[string]string{"a/b": "b", "a/x.sh": "x", "l": "->a/b"}))
	if err != nil {
		t.Fatal(err)
	}
	r, w := ioPipe()
	go func() { w.CloseWithError(nar.Dump(w, src.Abs(p))) }()
	m2, err := dst.Add(ctx, p, AddOptions{ExpectNarHash: m.NarHash, Source: "substituted:http://cache"}, func(ctx context.Context, out string) error {
		return nar.Restore(r, out)
	})
	if err != nil {
		t.Fatal(err)
	}
	if m2.NarHash != m.NarHash || m2.Source != "substituted:http://cache" {
		t.Errorf("substituted meta %+v", m2)
	}
}

func TestRootsAndGenerations(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var ps []Path
	for _, n := range []string{"1", "2", "3"} {
		p := mustPath(t, DrvFingerprint(n, "comfy-v"), "comfy-v")
		if _, err := s.Add(ctx, p, AddOptions{}, writeTree(map[string]string{"f": n})); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if _, err := s.RootOf("v"); !errors.Is(err, ErrNoRoot) {
		t.Errorf("RootOf before SetRoot: %v", err)
	}
	for i, p := range ps {
		n, err := s.SetRoot("v", p)
		if err != nil || n != i+1 {
			t.Fatalf("SetRoot = %d, %v", n, err)
		}
	}
	if n, _ := s.SetRoot("v", ps[2]); n != 3 {
		t.Errorf("SetRoot of the current object made generation %d", n)
	}
	if got, _ := s.RootOf("v"); got != ps[2] {
		t.Errorf("RootOf = %s", got)
	}
	link, _ := os.Readlink(s.RootLink("v"))
	if link != "../store/"+ps[2].String() {
		t.Errorf("root link %s is not relative", link)
	}
	if got, err := s.Rollback("v", 0); err != nil || got != ps[1] {
		t.Errorf("Rollback = %s, %v", got, err)
	}
	if got, err := s.Rollback("v", 0); err != nil || got != ps[0] {
		t.Errorf("second Rollback = %s, %v", got, err)
	}
	if _, err := s.Rollback("v", 0); !errors.Is(err, ErrNoRoot) {
		t.Errorf("Rollback past the first: %v", err)
	}
	if got, err := s.Rollback("v", 3); err != nil || got != ps[2] {
		t.Errorf("Rollback to 3 = %s, %v", got, err)
	}
	if _, err := s.SetRoot("../x", ps[0]); err == nil {
		t.Error("SetRoot accepted a bad id")
	}
	ids, _ := s.RootIDs()
	if len(ids) != 1 || ids[0] != "v" {
		t.Errorf("RootIDs = %v", ids)
	}
}

func TestClosureAndTempRoot(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := mustPath(t, DrvFingerprint("a", "a"), "a")
	b := mustPath(t, DrvFingerprint("b", "b"), "b")
	c := mustPath(t, DrvFingerprint("c", "c"), "c")
	s.Add(ctx, a, AddOptions{}, writeTree(map[string]string{"f": "a"}))
	s.Add(ctx, b, AddOptions{References: []Path{a}}, writeTree(map[string]string{"l": "->../" + a.String() + "/f"}))
	if _, err := s.Add(ctx, c, AddOptions{References: []Path{b, b}}, writeTree(map[string]string{"f": "c"})); err != nil {
		t.Fatal(err)
	}
	got, err := s.Closure(c)
	if err != nil || len(got) != 3 {
		t.Fatalf("Closure = %v, %v", got, err)
	}
	tr, err := s.AddTempRoot(ctx, []Path{c})
	if err != nil {
		t.Fatal(err)
	}
	tr.Add(a)
	live, _ := s.liveTempRoots()
	if len(live) != 2 {
		t.Errorf("live temp roots %v", live)
	}
	tr.Close()
	live, _ = s.liveTempRoots()
	if len(live) != 0 {
		t.Errorf("temp root after Close: %v", live)
	}
}

func TestLeaseBreaking(t *testing.T) {
	s := openTest(t)
	p := mustPath(t, DrvFingerprint("l", "l"), "l")
	l, _, err := s.tryLease(p.Digest().String(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, holder, err := s.tryLease(p.Digest().String(), p, nil); !errors.Is(err, errLeaseHeld) || holder.PID != os.Getpid() {
		t.Fatalf("second take: %v", err)
	}
	// Another host's lease that expired long ago is broken.
	l.Release()
	rec := `{"host":"elsewhere","pid":1,"started":"2020-01-01T00:00:00Z","expires":"2020-01-01T00:02:00Z","nonce":"x"}`
	os.WriteFile(s.leaseFile(p.Digest().String()), []byte(rec), 0o644)
	l2, _, err := s.tryLease(p.Digest().String(), p, nil)
	if err != nil {
		t.Fatalf("stale lease not broken: %v", err)
	}
	if err := l2.Check(); err != nil {
		t.Fatal(err)
	}
	l2.Release()
	// A live lease of another host is respected.
	rec = `{"host":"elsewhere","pid":1,"started":"2020-01-01T00:00:00Z","expires":"2999-01-01T00:02:00Z","nonce":"y"}`
	os.WriteFile(s.leaseFile(p.Digest().String()), []byte(rec), 0o644)
	if _, _, err := s.tryLease(p.Digest().String(), p, nil); !errors.Is(err, errLeaseHeld) {
		t.Fatalf("live foreign lease: %v", err)
	}
}

// TestLeaseBreakersOneWins has many contenders break one stale lease at once: exactly one
// holds the lease afterwards.
func TestLeaseBreakersOneWins(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := openTest(t)
		p := mustPath(t, DrvFingerprint("race", "race"), "race")
		rec := `{"host":"elsewhere","pid":1,"started":"2020-01-01T00:00:00Z","expires":"2020-01-01T00:02:00Z","nonce":"stale"}`
		os.WriteFile(s.leaseFile(p.Digest().String()), []byte(rec), 0o644)
		const n = 8
		got := make(chan *Lease, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			go func() {
				<-start
				l, _, err := s.tryLease(p.Digest().String(), p, nil)
				if err != nil {
					l = nil
				}
				got <- l
			}()
		}
		close(start)
		var holders []*Lease
		for i := 0; i < n; i++ {
			if l := <-got; l != nil {
				holders = append(holders, l)
			}
		}
		owned := 0
		for _, l := range holders {
			if l.Check() == nil {
				owned++
			}
		}
		if len(holders) != 1 || owned != 1 {
			t.Fatalf("round %d: %d contenders got the lease, %d own it", round, len(holders), owned)
		}
		holders[0].Release()
	}
}
