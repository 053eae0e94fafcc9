package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

type testObjs struct {
	a, b, c, d, root1, root2 Path
}

// buildGraph makes: root1 -> {a, b}, root2 -> {b, c}, b -> d, plus garbage g1 -> g2.
func buildGraph(t *testing.T, s *Store) (testObjs, Path, Path) {
	t.Helper()
	ctx := context.Background()
	mk := func(name string, refs ...Path) Path {
		p := mustPath(t, DrvFingerprint(name, name), name)
		files := map[string]string{"f": strings.Repeat(name, 100)}
		for _, r := range refs {
			files["ref-"+r.Name()] = "->../" + r.String()
		}
		if _, err := s.Add(ctx, p, AddOptions{Kind: "test", References: refs}, writeTree(files)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var o testObjs
	o.d = mk("d")
	o.a = mk("a")
	o.b = mk("b", o.d)
	o.c = mk("c")
	o.root1 = mk("comfy-one", o.a, o.b)
	o.root2 = mk("comfy-two", o.b, o.c)
	g2 := mk("g2")
	g1 := mk("g1", g2)
	if _, err := s.SetRoot("one", o.root1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRoot("two", o.root2); err != nil {
		t.Fatal(err)
	}
	return o, g1, g2
}

func TestGCPlanExecute(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	o, g1, g2 := buildGraph(t, s)
	// Debris: an object without metadata, a stale stage, a trash entry.
	debris := mustPath(t, DrvFingerprint("debris", "x"), "x")
	os.WriteFile(s.Abs(debris), []byte("junk"), 0o444)
	os.MkdirAll(filepath.Join(s.Dir(), ".tmp", "stage-1"), 0o755)
	os.WriteFile(filepath.Join(s.Dir(), ".trash", "old"), []byte("t"), 0o644)

	// Everything is newer than start minus a long grace: nothing is planned.
	plan, err := s.PlanGC(ctx, GCOptions{Grace: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Objects) != 0 {
		t.Errorf("grace ignored: %v", plan.Objects)
	}
	// The plan says what the grace window keeps: the unreachable g1 and g2, and only them.
	var gSize int64
	for _, g := range []Path{g1, g2} {
		m, err := s.Meta(g)
		if err != nil {
			t.Fatal(err)
		}
		gSize += m.NarSize
	}
	if plan.GraceKept != 2 || plan.GraceKeptSize != gSize {
		t.Errorf("grace kept %d objects (%d bytes), want 2 (%d bytes)", plan.GraceKept, plan.GraceKeptSize, gSize)
	}
	if _, err := s.PlanGC(ctx, GCOptions{}); err == nil || !strings.Contains(err.Error(), "another GC is running") {
		t.Errorf("second GC: %v", err)
	}
	plan.Close()

	plan, err = s.PlanGC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Objects) != 2 || plan.Objects[0].Path != g1.String() || plan.Objects[1].Path != g2.String() {
		t.Fatalf("plan objects (referrers first) = %+v", plan.Objects)
	}
	if plan.GraceKept != 0 {
		t.Errorf("no grace, but %d objects kept by it", plan.GraceKept)
	}
	if plan.Live != 6 || len(plan.Debris) != 3 || plan.Total <= 0 {
		t.Errorf("plan live %d debris %+v total %d", plan.Live, plan.Debris, plan.Total)
	}
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 5 || res.Freed != plan.Total {
		t.Errorf("deleted %+v freed %d", res.Deleted, res.Freed)
	}
	for _, p := range []Path{g1, g2, debris} {
		if s.Valid(p) {
			t.Errorf("%s still valid", p)
		}
		if _, err := os.Lstat(s.Abs(p)); err == nil {
			t.Errorf("%s still on disk", p)
		}
	}
	for _, p := range []Path{o.a, o.b, o.c, o.d, o.root1, o.root2} {
		if !s.Valid(p) {
			t.Errorf("live %s deleted", p)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".trash")); len(ents) != 0 {
		t.Errorf("trash not emptied: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".locks", "gc.lease")); err == nil {
		t.Error("gc lease left behind")
	}

	// Dropping root two and pruning generations frees c (b and d stay, root one uses them).
	os.Remove(s.RootLink("two"))
	plan, _ = s.PlanGC(ctx, GCOptions{})
	if len(plan.Objects) != 0 {
		t.Errorf("generation of two should still root it: %v", plan.Objects)
	}
	plan.Close()
	os.Remove(filepath.Join(s.BuildsDir(), ".generations", "comfy-two-1"))
	plan, _ = s.PlanGC(ctx, GCOptions{})
	var names []string
	for _, it := range plan.Objects {
		names = append(names, it.Path)
	}
	if len(names) != 2 || names[0] != o.root2.String() || names[1] != o.c.String() {
		t.Errorf("plan after dropping two = %v", names)
	}
	plan.Close()
}

func TestGCMaxFreedAndKeepGenerations(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var gens []Path
	for _, n := range []string{"1", "2", "3", "4"} {
		p := mustPath(t, DrvFingerprint(n, "comfy-v"), "comfy-v")
		s.Add(ctx, p, AddOptions{}, writeTree(map[string]string{"f": strings.Repeat(n, 1000)}))
		s.SetRoot("v", p)
		gens = append(gens, p)
	}
	s.Rollback("v", 0) // current is generation 3
	plan, err := s.PlanGC(ctx, GCOptions{KeepGenerations: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Generations) != 2 || len(plan.Objects) != 2 {
		t.Fatalf("keep 1: generations %+v objects %+v", plan.Generations, plan.Objects)
	}
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Valid(gens[2]) || !s.Valid(gens[3]) || s.Valid(gens[0]) || s.Valid(gens[1]) {
		t.Errorf("wrong objects kept: %+v", res)
	}
	if got, _ := s.RootOf("v"); got != gens[2] {
		t.Errorf("root moved: %s", got)
	}
	// MaxFreed stops after the first object.
	os.Remove(s.RootLink("v"))
	for _, g := range []string{"comfy-v-3", "comfy-v-4"} {
		os.Remove(filepath.Join(s.BuildsDir(), ".generations", g))
	}
	plan, _ = s.PlanGC(ctx, GCOptions{MaxFreed: 1})
	res, err = plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.StoppedAt || len(res.Deleted) != 1 {
		t.Errorf("max-freed: %+v", res)
	}
}

func TestGCKeepsLeasedAndTempRooted(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	o, g1, g2 := buildGraph(t, s)
	_ = o
	tr, _ := s.AddTempRoot(ctx, []Path{g2})
	defer tr.Close()
	x := mustPath(t, DrvFingerprint("x", "x"), "x")
	l, _, err := s.tryLease(x.Digest().String(), x, []Path{g1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	plan, _ := s.PlanGC(ctx, GCOptions{})
	if len(plan.Objects) != 0 {
		t.Errorf("leased/temp-rooted objects planned: %+v", plan.Objects)
	}
	plan.Close()
	// A root written between plan and execute is honoured.
	tr.Close()
	l.Release()
	plan, _ = s.PlanGC(ctx, GCOptions{})
	if len(plan.Objects) != 2 {
		t.Fatalf("plan %+v", plan.Objects)
	}
	tr2, _ := s.AddTempRoot(ctx, []Path{g1})
	defer tr2.Close()
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 2 || !s.Valid(g1) || !s.Valid(g2) {
		t.Errorf("rooted meanwhile: kept %v, deleted %+v", res.Kept, res.Deleted)
	}
	if h, _, _ := nar.Hash(s.Abs(g1)); h == "" {
		t.Error("kept object damaged")
	}
}

func TestVerifyNamesFlippedFile(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	o, _, _ := buildGraph(t, s)
	rep, err := s.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Checked != 8 {
		t.Fatalf("clean verify: %+v %v", rep, err)
	}
	f := filepath.Join(s.Abs(o.b), "f")
	os.Chmod(f, 0o644)
	b, _ := os.ReadFile(f)
	b[10] ^= 1
	os.WriteFile(f, b, 0o644)
	os.Chmod(f, 0o444)
	rep, _ = s.Verify(ctx, VerifyOptions{Workers: 2})
	if rep.OK() || len(rep.Problems) != 1 {
		t.Fatalf("verify after flip: %+v", rep)
	}
	pr := rep.Problems[0]
	if pr.Path != o.b.String() || pr.Kind != "hash-mismatch" || len(pr.Files) != 1 || pr.Files[0] != "f" {
		t.Errorf("problem %+v", pr)
	}
	// Repair through the Repairer: it builds the object again.
	rep, _ = s.Verify(ctx, VerifyOptions{Repair: repairFunc(func(ctx context.Context, p Path, m *Meta) error {
		_, err := s.Add(ctx, p, AddOptions{Kind: m.Kind, References: m.References}, writeTree(map[string]string{"f": strings.Repeat("b", 100), "ref-d": "->../" + o.d.String()}))
		return err
	})})
	if !rep.OK() || !rep.Problems[0].Repaired {
		t.Fatalf("repair: %+v", rep)
	}
	rep, _ = s.Verify(ctx, VerifyOptions{})
	if !rep.OK() || len(rep.Problems) != 0 {
		t.Errorf("after repair: %+v", rep)
	}
	// An absolute symlink into the store is reported.
	os.Chmod(s.Abs(o.c), 0o755)
	os.Symlink(s.Abs(o.a), filepath.Join(s.Abs(o.c), "abs"))
	rep, _ = s.Verify(ctx, VerifyOptions{})
	kinds := map[string]bool{}
	for _, p := range rep.Problems {
		kinds[p.Kind] = true
	}
	if !kinds["absolute-symlink"] || !kinds["hash-mismatch"] {
		t.Errorf("absolute symlink: %+v", rep.Problems)
	}
}

type repairFunc func(ctx context.Context, p Path, m *Meta) error

func (f repairFunc) Repair(ctx context.Context, p Path, m *Meta) error { return f(ctx, p, m) }

func TestInfoDuOptimise(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	o, g1, _ := buildGraph(t, s)
	info, err := s.Info(o.b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Referrers, []Path{o.root1, o.root2}) && !slices.Equal(info.Referrers, []Path{o.root2, o.root1}) {
		t.Errorf("referrers %v", info.Referrers)
	}
	if strings.Join(info.Roots, ",") != "one,two" || info.DiskSize != 100 {
		t.Errorf("info %+v", info)
	}
	du, err := s.Du()
	if err != nil {
		t.Fatal(err)
	}
	if len(du.Versions) != 2 {
		t.Fatalf("du %+v", du)
	}
	one := du.Versions[0]
	ma, _ := s.Meta(o.a)
	mb, _ := s.Meta(o.b)
	md, _ := s.Meta(o.d)
	mr, _ := s.Meta(o.root1)
	if one.ID != "one" || one.Objects != 4 || one.Shared != mb.NarSize+md.NarSize || one.Alone != ma.NarSize+mr.NarSize {
		t.Errorf("du one %+v", one)
	}
	if du.Unrooted == 0 {
		t.Error("garbage not counted as unrooted")
	}
	// Two objects with an identical file: optimise links them, NAR hashes stay.
	dup := mustPath(t, DrvFingerprint("dup", "dup"), "dup")
	s.Add(ctx, dup, AddOptions{}, writeTree(map[string]string{"f": strings.Repeat("g1", 100)}))
	res, err := s.Optimise(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unsupported == "" && (res.Linked != 1 || res.Saved != 200) {
		t.Errorf("optimise %+v", res)
	}
	a, _ := os.Stat(filepath.Join(s.Abs(dup), "f"))
	b, _ := os.Stat(filepath.Join(s.Abs(g1), "f"))
	if res.Unsupported == "" && !os.SameFile(a, b) {
		t.Error("not linked")
	}
	rep, _ := s.Verify(ctx, VerifyOptions{})
	if !rep.OK() {
		t.Errorf("verify after optimise: %+v", rep)
	}
	if fi, _ := os.Stat(s.Abs(dup)); fi.Mode().Perm() != 0o555 || fi.ModTime().Unix() != 1 {
		t.Errorf("object dir not canonical after optimise: %v %v", fi.Mode(), fi.ModTime())
	}
}
