package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/diff"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// detSeed replays one run of the determinism property tests: go test -run Determinism -args
// -determinism.seed=N (each failure prints its seed).
var detSeed = flag.Int64("determinism.seed", 0, "seed of the determinism property tests (0: the clock)")

func seedFor(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *detSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with: go test ./builder -run '^%s$' -args -determinism.seed=%d", t.Name(), seed)
		}
	})
	return rand.New(rand.NewSource(seed))
}

// detFixture holds real repositories and model files from which random specs are drawn. The
// node names are chosen so that no natural order (spec order, creation order) is alphabetical.
type detFixture struct {
	dir         string
	comfy       string
	comfyCommit string
	nodes       []detNode
	models      []detModel
}

type detNode struct {
	name, dir, commit string
}

type detModel struct {
	path, subdir, checksum string
}

func newDetFixture(t testing.TB) *detFixture {
	t.Helper()
	f := &detFixture{dir: t.TempDir()}
	f.comfy = filepath.Join(f.dir, "ComfyUI")
	f.comfyCommit = newRepo(t, f.comfy, fakeComfy)
	for _, name := range []string{"zeta-nodes", "Alpha_Pack", "mid.node", "beta2", "ComfyUI-KJNodes"} {
		dir := filepath.Join(f.dir, "src", name)
		c := newRepo(t, dir, map[string]string{"__init__.py": "NAME = " + fmt.Sprintf("%q", name) + "\n"})
		f.nodes = append(f.nodes, detNode{name, dir, c})
	}
	for i, m := range []struct{ file, subdir string }{
		{"z-model.safetensors", "checkpoints"},
		{"a-lora.safetensors", "loras"},
		{"b-model.safetensors", "checkpoints"},
		{"vae.pt", "vae/sdxl"},
	} {
		p := filepath.Join(f.dir, "models", m.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := []byte(fmt.Sprintf("model %d: %s\n", i, m.file))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := ""
		if i%2 == 0 { // the others are trusted on first use
			h := sha256.Sum256(data)
			sum = "sha256:" + hex.EncodeToString(h[:])
		}
		f.models = append(f.models, detModel{p, m.subdir, sum})
	}
	return f
}

// randomSpec draws a spec from the fixture: a random subset of nodes and models, each pinned
// by branch or by full commit, some writable, a random env.
func (f *detFixture) randomSpec(rng *rand.Rand, id string) *specs.Spec {
	s := &specs.Spec{SchemaVersion: 2, VersionID: id, Comfy: specs.Comfy{Repo: f.comfy, Ref: "main"}}
	if rng.Intn(2) == 0 {
		s.Comfy = specs.Comfy{Repo: f.comfy, Commit: f.comfyCommit}
	}
	for _, i := range rng.Perm(len(f.nodes))[:rng.Intn(len(f.nodes)+1)] {
		n := f.nodes[i]
		cn := specs.CustomNode{Name: n.name, Repo: n.dir, Writable: rng.Intn(3) == 0}
		if rng.Intn(2) == 0 {
			cn.Commit = n.commit
		} else {
			cn.Ref = "main"
		}
		s.CustomNodes = append(s.CustomNodes, cn)
	}
	for _, i := range rng.Perm(len(f.models))[:rng.Intn(len(f.models)+1)] {
		m := f.models[i]
		s.Models = append(s.Models, specs.Model{Source: m.path, TargetSubdir: m.subdir, Checksum: m.checksum})
	}
	if n := rng.Intn(4); n > 0 {
		s.Env = map[string]string{}
		for i := range n {
			s.Env[fmt.Sprintf("VAR_%d", rng.Intn(10))] = fmt.Sprint(i)
		}
	}
	return s
}

// shuffled returns a copy of s with its custom nodes and models in a random order.
func shuffled(rng *rand.Rand, s *specs.Spec) *specs.Spec {
	c := *s
	c.CustomNodes = append([]specs.CustomNode(nil), s.CustomNodes...)
	c.Models = append([]specs.Model(nil), s.Models...)
	rng.Shuffle(len(c.CustomNodes), func(i, j int) { c.CustomNodes[i], c.CustomNodes[j] = c.CustomNodes[j], c.CustomNodes[i] })
	rng.Shuffle(len(c.Models), func(i, j int) { c.Models[i], c.Models[j] = c.Models[j], c.Models[i] })
	return &c
}

// writeSpec writes s to dir in JSON or HCL (through the formatter `convert` uses) and reads
// it back as the CLI would.
func writeSpec(t *testing.T, dir string, s *specs.Spec, hcl bool) *specs.Spec {
	t.Helper()
	var data []byte
	var err error
	ext := ".json"
	if hcl {
		data, err = lang.FormatHCL(s)
		ext = ".hcl"
	} else {
		data, err = lang.FormatJSON(s)
	}
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, s.VersionID+ext)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	back, _, err := lang.LoadFile(context.Background(), file, lang.Options{})
	if err != nil {
		t.Fatalf("reading back %s: %v\n%s", file, err, data)
	}
	return back
}

// TestDeterminismEveryPathSameRoot is the property of docs/building.md "One canonical form":
// random specs, with nodes and models in random orders and in JSON or HCL, give one root
// through plan on a fresh ROOT, build, a rebuild, a build reading the lock plan wrote, a
// build in another ROOT, an in-process Resolve + NewPlan, and a lock read back from JSON.
func TestDeterminismEveryPathSameRoot(t *testing.T) {
	rng := seedFor(t)
	f := newDetFixture(t)
	ctx := context.Background()
	iterations := 3
	if testing.Short() {
		iterations = 1
	}
	for it := range iterations {
		base := f.randomSpec(rng, fmt.Sprintf("det%d", it))
		variant := func(tag string) *specs.Spec {
			return writeSpec(t, filepath.Join(t.TempDir(), "versions"), shuffled(rng, base), rng.Intn(2) == 0)
		}
		type result struct {
			path string
			root string
		}
		var got []result
		note := func(path string, root fmt.Stringer) { got = append(got, result{path, root.String()}) }

		// plan on a fresh ROOT (it resolves and writes the lock, builds nothing).
		rootA := filepath.Join(t.TempDir(), "a")
		plan, _, err := LoadPlan(ctx, BuildOptions{Root: rootA, Spec: variant("plan")})
		if err != nil {
			t.Fatalf("iteration %d: plan: %v", it, err)
		}
		note("plan on a fresh ROOT", plan.Root.Path)

		// build in another ROOT (resolving in process), then a rebuild there.
		rootB := filepath.Join(t.TempDir(), "b")
		res, err := Build(ctx, BuildOptions{Root: rootB, Spec: variant("build")})
		if err != nil {
			t.Fatalf("iteration %d: build: %v", it, err)
		}
		note("build (fresh ROOT, in-process resolve)", res.Root)
		res2, err := Build(ctx, BuildOptions{Root: rootB, Spec: variant("rebuild")})
		if err != nil {
			t.Fatalf("iteration %d: rebuild: %v", it, err)
		}
		note("rebuild", res2.Root)
		if res2.Generation != res.Generation || res2.Built != 0 {
			t.Errorf("iteration %d: the rebuild made generation %d (built %d), want %d and nothing built", it, res2.Generation, res2.Built, res.Generation)
		}

		// build reading the lock plan wrote to disk.
		res3, err := Build(ctx, BuildOptions{Root: rootA, Spec: variant("build-after-plan")})
		if err != nil {
			t.Fatalf("iteration %d: build after plan: %v", it, err)
		}
		note("build reading the lock from disk", res3.Root)
		if res3.Resolved {
			t.Errorf("iteration %d: the build after plan resolved again", it)
		}

		// in-process Resolve, then NewPlan on that lock and on its JSON round trip.
		spec := variant("resolve")
		rootC := filepath.Join(t.TempDir(), "c")
		mr, err := model.NewResolver(rootC, model.Options{}, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		lock, err := Resolve(ctx, spec, nil, ResolveOptions{Git: git.NewMirrors(MirrorDir(rootC), git.Credentials{}), Models: mr, Root: rootC})
		if err != nil {
			t.Fatalf("iteration %d: resolve: %v", it, err)
		}
		p, err := NewPlan(spec, lock, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		note("in-process Resolve + NewPlan", p.Root.Path)
		data, err := lock.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := specs.ParseLock(data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(lock, back); diff != "" {
			t.Errorf("iteration %d: the lock in memory differs from its JSON round trip (-memory +disk):\n%s", it, diff)
		}
		p2, err := NewPlan(spec, back, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		note("NewPlan on the lock read back from JSON", p2.Root.Path)
		if diff := cmp.Diff(resolvedOnly(res.Lock), resolvedOnly(lock)); diff != "" {
			t.Errorf("iteration %d: the locks resolved in two ROOTs differ (-build +resolve):\n%s", it, diff)
		}

		for _, r := range got[1:] {
			if r.root != got[0].root {
				t.Errorf("iteration %d: %s gave %s, %s gave %s\nspec: %s", it, got[0].path, got[0].root, r.path, r.root, specs.CanonicalJSON(base))
			}
		}
	}
}

// resolvedOnly is l without what a build records (NAR hashes and store paths of git sources).
func resolvedOnly(l *specs.Lock) *specs.Lock {
	c := cloneLock(l)
	c.Comfy.NarHash, c.Comfy.StorePath = "", ""
	for i := range c.CustomNodes {
		c.CustomNodes[i].NarHash, c.CustomNodes[i].StorePath = "", ""
	}
	return c
}

// randomLock draws a lock without resolving anything: the pure half of the property, run
// many times. Its lists are in a random order, as a lock from an older runpod-comfy or a
// hand edit may be.
func randomLock(rng *rand.Rand, id string) *specs.Lock {
	hexOf := func(n int) string {
		b := make([]byte, n/2)
		rng.Read(b)
		return hex.EncodeToString(b)
	}
	l := &specs.Lock{LockVersion: specs.LockVersion, VersionID: id, SpecHash: "sha256:" + hexOf(64),
		Comfy: specs.GitLock{Repo: "https://example.invalid/ComfyUI", Commit: hexOf(40)}}
	names := []string{"zeta", "Alpha", "mid.node", "b_2", "ComfyUI-KJNodes", "rgthree-comfy"}
	for _, i := range rng.Perm(len(names))[:rng.Intn(len(names)+1)] {
		l.CustomNodes = append(l.CustomNodes, specs.NodeLock{Name: names[i],
			GitLock:             specs.GitLock{Repo: "https://example.invalid/" + names[i], Commit: hexOf(40), Submodules: rng.Intn(2) == 0},
			InstallRequirements: true, Writable: rng.Intn(3) == 0})
	}
	targets := []string{"checkpoints/z.safetensors", "loras/a.safetensors", "checkpoints/b.safetensors", "vae/sdxl/vae.pt"}
	for _, i := range rng.Perm(len(targets))[:rng.Intn(len(targets)+1)] {
		l.Models = append(l.Models, specs.ModelLock{Target: targets[i], Source: "https://example.invalid/" + path.Base(targets[i]),
			Checksum: "sha256:" + hexOf(64), Size: rng.Int63n(1 << 30)})
	}
	if rng.Intn(2) == 0 {
		p := &specs.PythonLock{Interpreter: specs.PythonIdentity{Version: "3.11.9", Implementation: "cpython", ABI: "cp311", Platform: "linux-x86_64", Path: "/usr/bin/python3.11"},
			Installer: "pip 24.0"}
		for _, n := range rng.Perm(8)[:rng.Intn(8)] {
			file := "p.whl"
			if n%3 == 0 {
				file = "p.tar.gz" // an sdist: built with the lock's pip
			}
			p.Packages = append(p.Packages, specs.PackageLock{Name: fmt.Sprintf("Pkg-%c", 'h'-n), Version: "1.0", URL: "https://example.invalid/" + file,
				Filename: file, SHA256: hexOf(64), RequestedBy: []string{"spec:python.packages[0]"}})
		}
		for _, n := range rng.Perm(4)[:rng.Intn(4)] {
			p.SystemSitePackages = append(p.SystemSitePackages, specs.Distribution{Name: fmt.Sprintf("site%d", n), Version: "2"})
		}
		l.Python = p
	}
	if rng.Intn(2) == 0 {
		l.Env = map[string]string{"HF_HOME": "/x", "A": hexOf(4)}
	}
	return l
}

// shuffledLock returns a copy of l with every list in a random order.
func shuffledLock(rng *rand.Rand, l *specs.Lock) *specs.Lock {
	c := l.Clone()
	rng.Shuffle(len(c.CustomNodes), func(i, j int) { c.CustomNodes[i], c.CustomNodes[j] = c.CustomNodes[j], c.CustomNodes[i] })
	rng.Shuffle(len(c.Models), func(i, j int) { c.Models[i], c.Models[j] = c.Models[j], c.Models[i] })
	if p := c.Python; p != nil {
		rng.Shuffle(len(p.Packages), func(i, j int) { p.Packages[i], p.Packages[j] = p.Packages[j], p.Packages[i] })
		rng.Shuffle(len(p.SystemSitePackages), func(i, j int) {
			p.SystemSitePackages[i], p.SystemSitePackages[j] = p.SystemSitePackages[j], p.SystemSitePackages[i]
		})
	}
	return c
}

// TestDeterminismPlanIsAFunctionOfTheLock: NewPlan gives one root (and one venv) for a lock
// whatever the order of its lists, in memory or read back from JSON, and the root's manifest
// lists are sorted.
func TestDeterminismPlanIsAFunctionOfTheLock(t *testing.T) {
	rng := seedFor(t)
	for it := range 300 {
		l := randomLock(rng, "pure")
		spec := &specs.Spec{SchemaVersion: 2, VersionID: "pure", Python: &specs.Python{SystemSitePackages: l.Python != nil && len(l.Python.SystemSitePackages) > 0}}
		p0, err := NewPlan(spec, l, PlanOptions{})
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		s := shuffledLock(rng, l)
		data, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := specs.ParseLock(data)
		if err != nil {
			t.Fatal(err)
		}
		inMemory := s.Clone()
		inMemory.Canonicalize()
		if diff := cmp.Diff(inMemory, back); diff != "" {
			t.Fatalf("iteration %d: canonical lock in memory and read back differ (-memory +disk):\n%s", it, diff)
		}
		for name, lk := range map[string]*specs.Lock{"shuffled": s, "read back from JSON": back} {
			p, err := NewPlan(spec, lk, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Root.Path != p0.Root.Path {
				t.Fatalf("iteration %d: the %s lock plans root %s, the original %s", it, name, p.Root.Path, p0.Root.Path)
			}
			if (p.Venv == nil) != (p0.Venv == nil) || p.Venv != nil && p.Venv.Path != p0.Venv.Path {
				t.Fatalf("iteration %d: the %s lock plans another venv", it, name)
			}
		}
		m := p0.Root.Params.(*RootParams).Manifest
		if !slices.IsSortedFunc(m.CustomNodes, func(a, b specs.ManifestNode) int { return strings.Compare(a.Name, b.Name) }) ||
			!slices.IsSortedFunc(m.Models, func(a, b specs.ManifestModel) int { return strings.Compare(a.Target, b.Target) }) {
			t.Fatalf("iteration %d: manifest lists not sorted: %+v", it, m)
		}
	}
}

// TestDiffSeesEveryRootInput: whenever two locks (and the spec options that reach the root)
// plan different runtime roots, diff reports a change; when they plan the same root, it
// reports none. Each iteration changes one input of a random lock.
func TestDiffSeesEveryRootInput(t *testing.T) {
	rng := seedFor(t)
	type sideIn struct {
		lock           *specs.Lock
		skip, sysSites bool
	}
	mutations := []struct {
		name string
		f    func(s *sideIn) bool // false: not applicable to this lock
	}{
		{"env value", func(s *sideIn) bool { s.lock.Env = map[string]string{"HF_HOME": "/elsewhere"}; return true }},
		{"env removed", func(s *sideIn) bool { ok := len(s.lock.Env) > 0; s.lock.Env = nil; return ok }},
		{"comfy commit", func(s *sideIn) bool { s.lock.Comfy.Commit = strings.Repeat("e", 40); return true }},
		{"node writable", func(s *sideIn) bool {
			if len(s.lock.CustomNodes) == 0 {
				return false
			}
			s.lock.CustomNodes[0].Writable = !s.lock.CustomNodes[0].Writable
			return true
		}},
		{"node submodules", func(s *sideIn) bool {
			if len(s.lock.CustomNodes) == 0 {
				return false
			}
			s.lock.CustomNodes[0].Submodules = !s.lock.CustomNodes[0].Submodules
			return true
		}},
		{"node removed", func(s *sideIn) bool {
			ok := len(s.lock.CustomNodes) > 0
			s.lock.CustomNodes = s.lock.CustomNodes[min(1, len(s.lock.CustomNodes)):]
			return ok
		}},
		{"model size", func(s *sideIn) bool {
			if len(s.lock.Models) == 0 {
				return false
			}
			s.lock.Models[0].Size++
			return true
		}},
		{"model file name", func(s *sideIn) bool {
			if len(s.lock.Models) == 0 {
				return false
			}
			s.lock.Models[0].Source += ".renamed"
			return true
		}},
		{"model checksum", func(s *sideIn) bool {
			if len(s.lock.Models) == 0 {
				return false
			}
			s.lock.Models[0].Checksum = "sha256:" + strings.Repeat("f", 64)
			return true
		}},
		{"installer", func(s *sideIn) bool {
			// pip builds sdists only: a lock of wheels does not depend on it.
			if s.lock.Python == nil || !slices.ContainsFunc(s.lock.Python.Packages, func(p specs.PackageLock) bool { return strings.HasSuffix(p.Filename, ".tar.gz") }) {
				return false
			}
			s.lock.Python.Installer = "pip 25.1"
			return true
		}},
		{"package file", func(s *sideIn) bool {
			if s.lock.Python == nil || len(s.lock.Python.Packages) == 0 {
				return false
			}
			s.lock.Python.Packages[0].Filename = "other.whl"
			return true
		}},
		{"interpreter", func(s *sideIn) bool {
			if s.lock.Python == nil {
				return false
			}
			s.lock.Python.Interpreter.Path = "/opt/python/bin/python3"
			return true
		}},
		{"system site-packages", func(s *sideIn) bool { s.sysSites = !s.sysSites; return s.lock.Python != nil }},
		{"a site package", func(s *sideIn) bool {
			if s.lock.Python == nil || !s.sysSites {
				return false
			}
			s.lock.Python.SystemSitePackages = append(s.lock.Python.SystemSitePackages, specs.Distribution{Name: "torch", Version: "2.5.1"})
			return true
		}},
		{"skip_models", func(s *sideIn) bool { s.skip = !s.skip; return len(s.lock.Models) > 0 }},
		// Not inputs of the root: diff may say nothing, the root must not change.
		{"spec hash only", func(s *sideIn) bool { s.lock.SpecHash = "sha256:" + strings.Repeat("0", 64); return true }},
		{"order only", func(s *sideIn) bool { s.lock = shuffledLock(rng, s.lock); return true }},
	}
	plan := func(s sideIn) store.Path {
		spec := &specs.Spec{SchemaVersion: 2, VersionID: s.lock.VersionID, Options: specs.Options{SkipModels: s.skip},
			Python: &specs.Python{SystemSitePackages: s.sysSites}}
		p, err := NewPlan(spec, s.lock, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Root.Path
	}
	covered := map[string]bool{}
	for it := range 400 {
		a := sideIn{lock: randomLock(rng, "v"), sysSites: rng.Intn(2) == 0}
		m := mutations[rng.Intn(len(mutations))]
		b := sideIn{lock: a.lock.Clone(), skip: a.skip, sysSites: a.sysSites}
		if !m.f(&b) {
			continue
		}
		covered[m.name] = true
		rep := diff.Compare(diff.Side{Label: "a", Lock: a.lock, SkipModels: a.skip, SystemSitePackages: a.sysSites},
			diff.Side{Label: "b", Lock: b.lock, SkipModels: b.skip, SystemSitePackages: b.sysSites}, diff.Options{})
		ra, rb := plan(a), plan(b)
		switch {
		case ra != rb && rep.Empty():
			t.Fatalf("iteration %d (%s): the roots differ (%s, %s) but diff says no changes", it, m.name, ra, rb)
		case ra == rb && !rep.Empty() && m.name == "order only":
			t.Fatalf("iteration %d (%s): the same root, but diff reports %+v", it, m.name, rep)
		case ra == rb && m.name != "order only" && m.name != "spec hash only":
			t.Fatalf("iteration %d (%s): the change did not reach the root", it, m.name)
		case ra != rb && (m.name == "order only" || m.name == "spec hash only"):
			t.Fatalf("iteration %d (%s): the root changed", it, m.name)
		}
	}
	if len(covered) != len(mutations) {
		t.Errorf("only %d of %d mutations were drawn", len(covered), len(mutations))
	}
}
