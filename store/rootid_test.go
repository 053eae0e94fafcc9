package store

import (
	"context"
	"strings"
	"testing"
)

// An id the spec rule accepts ("+" and "-" included) works through every root operation:
// SetRoot, Generations, RootIDs, Rollback and gc's generation pruning.
func TestRootIDWithPlusAndDash(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const id = "sdxl+lora-2"
	var ps []Path
	for _, n := range []string{"1", "2", "3"} {
		p := mustPath(t, DrvFingerprint(n, "comfy-"+id), "comfy-"+id)
		if _, err := s.Add(ctx, p, AddOptions{}, writeTree(map[string]string{"f": strings.Repeat(n, 100)})); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetRoot(id, p); err != nil {
			t.Fatalf("SetRoot(%q): %v", id, err)
		}
		ps = append(ps, p)
	}
	gens, err := s.Generations(id)
	if err != nil || len(gens) != 3 || !gens[2].Current {
		t.Fatalf("generations %+v (%v)", gens, err)
	}
	ids, err := s.RootIDs()
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("RootIDs %v (%v), want [%s]", ids, err, id)
	}
	if got, err := s.Rollback(id, 0); err != nil || got != ps[1] {
		t.Fatalf("rollback -> %s (%v), want %s", got, err, ps[1])
	}
	plan, err := s.PlanGC(ctx, GCOptions{KeepGenerations: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	// Generation 3 is the newest kept, generation 2 is current: only generation 1 goes.
	if len(plan.Generations) != 1 || !strings.HasSuffix(plan.Generations[0].Path, "comfy-"+id+"-1") {
		t.Errorf("keep 1 of %s: pruning %+v, want generation 1 only", id, plan.Generations)
	}
	for _, bad := range []string{"", "a/b", "-x", ".x", strings.Repeat("a", 101)} {
		if _, err := s.SetRoot(bad, ps[0]); err == nil {
			t.Errorf("SetRoot(%q) accepted", bad)
		}
	}
}
