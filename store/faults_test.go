package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// corruptMeta replaces the metadata of p with data (truncated JSON, garbage...).
func corruptMeta(t *testing.T, s *Store, p Path, data string) {
	t.Helper()
	f := s.metaFile(p.Digest())
	os.Remove(f)
	if err := os.WriteFile(f, []byte(data), 0o444); err != nil {
		t.Fatal(err)
	}
}

// rebuildRepairer makes an object of the test graph again with the same build function.
type rebuildRepairer struct {
	s     *Store
	build map[Path]func(ctx context.Context) error
}

func (r *rebuildRepairer) Repair(ctx context.Context, p Path, m *Meta) error {
	b := r.build[p]
	if b == nil {
		return errors.New("unknown object")
	}
	return b(ctx)
}

// TestCorruptMetadataDoesNotBlock: one unreadable metadata file is reported as a problem of
// its object by List, Verify (and --repair), GC and Build, and every other object is handled
// as usual.
func TestCorruptMetadataDoesNotBlock(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	o, g1, g2 := buildGraph(t, s)
	g3files := map[string]string{"f": "g3"}
	g3 := mustPath(t, DrvFingerprint("g3", "g3"), "g3")
	if _, err := s.Add(ctx, g3, AddOptions{Kind: "test"}, writeTree(g3files)); err != nil {
		t.Fatal(err)
	}
	nar3, _ := s.Meta(g3)
	corruptMeta(t, s, g3, `{"path": "`+g3.String()+`", "nar_ha`) // truncated

	// Meta and Valid: not valid, and the error says why.
	if _, err := s.Meta(g3); !errors.Is(err, ErrCorruptMeta) || !errors.Is(err, ErrNotValid) {
		t.Errorf("Meta of a truncated file: %v, want ErrCorruptMeta and ErrNotValid", err)
	}

	// List: the others, and the bad one named.
	ms, bad, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(ms) != 8 || len(bad) != 1 || bad[0].Name != g3.String() {
		t.Errorf("List: %d objects, bad %v; want 8 and %s", len(ms), bad, g3)
	}

	// Verify: one problem of g3, the eight others checked, g3 not also "unregistered".
	rep, err := s.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Checked != 9 || len(rep.Problems) != 1 || rep.Problems[0].Kind != "corrupt-metadata" || rep.Problems[0].Path != g3.String() || len(rep.Unregistered) != 0 {
		t.Errorf("Verify: %+v", rep)
	}
	if rep, err := s.Verify(ctx, VerifyOptions{Paths: []Path{g3, o.a}}); err != nil || len(rep.Problems) != 1 || rep.Checked != 2 {
		t.Errorf("Verify of named paths: %+v %v", rep, err)
	}

	// GC: g1 and g2 (garbage) go, g3 is kept and named; its object stays on disk.
	plan, err := s.PlanGC(ctx, GCOptions{})
	if err != nil {
		t.Fatalf("PlanGC: %v", err)
	}
	if len(plan.Unreadable) != 1 || plan.Unreadable[0].Path != g3.String() || plan.Held != "" {
		t.Errorf("plan unreadable %+v held %q", plan.Unreadable, plan.Held)
	}
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Deleted {
		if strings.Contains(d.Path, g3.String()) {
			t.Errorf("gc deleted %s, whose metadata it cannot read", d.Path)
		}
	}
	if s.Valid(g1) || s.Valid(g2) {
		t.Error("garbage kept")
	}
	if _, err := os.Lstat(s.Abs(g3)); err != nil {
		t.Errorf("object with unreadable metadata removed: %v", err)
	}

	// Verify --repair makes g3 again.
	r := &rebuildRepairer{s: s, build: map[Path]func(context.Context) error{g3: func(ctx context.Context) error {
		_, err := s.Add(ctx, g3, AddOptions{Kind: "test"}, writeTree(g3files))
		return err
	}}}
	rep, err = s.Verify(ctx, VerifyOptions{Repair: r})
	if err != nil || !rep.OK() || len(rep.Problems) != 1 || !rep.Problems[0].Repaired {
		t.Fatalf("verify --repair: %+v %v", rep, err)
	}
	if m, err := s.Meta(g3); err != nil || m.NarHash != nar3.NarHash {
		t.Errorf("after repair: %v %v", m, err)
	}

	// A build that needs an object with corrupt metadata makes it again.
	corruptMeta(t, s, g3, "garbage\x00\xff")
	m, err := s.Add(ctx, g3, AddOptions{Kind: "test"}, writeTree(g3files))
	if err != nil || m.NarHash != nar3.NarHash || !s.Valid(g3) {
		t.Fatalf("rebuild over corrupt metadata: %v %v", m, err)
	}

	// Corrupt metadata of a root: what it references is unknown, so gc deletes no object
	// (garbage included) and says why; the root's closure stays whole.
	g4 := mustPath(t, DrvFingerprint("g4", "g4"), "g4")
	if _, err := s.Add(ctx, g4, AddOptions{Kind: "test"}, writeTree(map[string]string{"f": "g4"})); err != nil {
		t.Fatal(err)
	}
	corruptMeta(t, s, o.root1, "{}")
	plan, err = s.PlanGC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Held == "" || !strings.Contains(plan.Held, o.root1.String()) || len(plan.Objects) != 0 {
		t.Errorf("plan with an unreadable root: held %q, objects %+v", plan.Held, plan.Objects)
	}
	if _, err := plan.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Path{o.a, o.b, o.d, g4} {
		if !s.Valid(p) {
			t.Errorf("%s deleted while a root's metadata was unreadable", p)
		}
	}
}
