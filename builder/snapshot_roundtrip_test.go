package builder

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/registry"
	"github.com/runpod-comfy/runpod-comfy/internal/registrytest"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// TestSnapshotRoundTrip is a property test: for specs of random subsets of git and registry
// nodes, in random order, with random version requests, the ComfyUI-Manager snapshot exported
// from the resolved lock (JSON or YAML, its maps written in random order) imports into a spec
// that resolves to the same lock: the same ComfyUI, the same nodes at the same commits, and
// the same registry versions, URLs and archive hashes. Only what a snapshot cannot hold
// differs: the spec hash and the version requests (the snapshot pins exact versions).
func TestSnapshotRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	comfy := filepath.Join(dir, "ComfyUI")
	newRepo(t, comfy, fakeComfy)
	var gitNodes []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		newRepo(t, p, map[string]string{"__init__.py": fmt.Sprintf("N = %d\n", i)})
		gitNodes = append(gitNodes, p)
	}
	nodes := map[string]registrytest.Node{}
	ids := []string{"comfyui-impact-pack", "rgthree-comfy", "comfyui_essentials", "was.node.suite"}
	for _, id := range ids {
		var vs []registrytest.Version
		for _, v := range []string{"0.9.0", "1.0.0", "1.0.7", "1.2.0", "2.0.0"} {
			vs = append(vs, registrytest.Version{Version: v, Files: map[string]string{"__init__.py": id + " " + v + "\n"}})
		}
		nodes[id] = registrytest.Node{Versions: vs}
	}
	srv := registrytest.Start(registrytest.Static(nodes))
	defer srv.Close()
	client, err := registry.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts := ResolveOptions{
		Git:      git.NewMirrors(filepath.Join(dir, "mirrors"), git.Credentials{}),
		Registry: &registry.Resolver{Client: client, Fetcher: registry.NewFetcher(filepath.Join(dir, "archives"))},
	}
	requests := []string{"1.0.7", "latest", "^1.0.0", "~1.0.0", ">=0.9.0, <1.2.0", "1.*", "0.9.0"}
	rng := rand.New(rand.NewSource(19))
	for iter := 0; iter < 16; iter++ {
		spec := &specs.Spec{SchemaVersion: 2, VersionID: "rt", Comfy: specs.Comfy{Repo: comfy, Ref: "main"}}
		for _, p := range gitNodes {
			if rng.Intn(3) > 0 {
				spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: filepath.Base(p), Repo: p, Ref: "main"})
			}
		}
		for _, id := range ids {
			if rng.Intn(3) > 0 {
				spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: id, Registry: id, Version: requests[rng.Intn(len(requests))]})
			}
		}
		rng.Shuffle(len(spec.CustomNodes), func(i, j int) { spec.CustomNodes[i], spec.CustomNodes[j] = spec.CustomNodes[j], spec.CustomNodes[i] })
		l1, err := Resolve(ctx, spec, nil, opts)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		snap, notes := lang.ExportSnapshot(l1)
		if len(notes) != 1 || !strings.HasPrefix(notes[0], "comfyui: the snapshot holds the commit only") {
			t.Fatalf("iteration %d: export notes %q", iter, notes)
		}
		// As runpod-comfy snapshot writes it, and with its maps shuffled.
		format := []string{"json", "yaml"}[iter%2]
		var data []byte
		switch iter % 4 {
		case 0:
			data, err = snap.MarshalManagerJSON()
		case 1:
			data, err = snap.MarshalManagerYAML()
		default:
			data = shuffledSnapshot(t, rng, snap, format)
		}
		if err != nil {
			t.Fatal(err)
		}
		s2, notes, err := lang.ImportSnapshot(data, "rt", comfy)
		if err != nil || len(notes) != 0 {
			t.Fatalf("iteration %d (%s): import: %v %q\n%s", iter, format, err, notes, data)
		}
		rng.Shuffle(len(s2.CustomNodes), func(i, j int) { s2.CustomNodes[i], s2.CustomNodes[j] = s2.CustomNodes[j], s2.CustomNodes[i] })
		l2, err := Resolve(ctx, s2, nil, opts)
		if err != nil {
			t.Fatalf("iteration %d (%s): resolving the import: %v", iter, format, err)
		}
		if diff := cmp.Diff(pins(l1), pins(l2)); diff != "" {
			t.Fatalf("iteration %d (%s): the lock changed through the snapshot (-exported +imported):\n%s\n%s", iter, format, diff, data)
		}
	}
}

// pins is a lock without what a snapshot cannot carry: the spec hash, ComfyUI's ref and the
// registry nodes' version requests.
func pins(l *specs.Lock) *specs.Lock {
	c := l.Clone()
	c.SpecHash, c.Comfy.Ref = "", ""
	for i := range c.CustomNodes {
		c.CustomNodes[i].Ref = ""
		if r := c.CustomNodes[i].Registry; r != nil {
			r.Request = ""
		}
	}
	return c
}

// shuffledSnapshot writes snap in Manager's format with its maps in random order (a reader
// may not depend on the order Manager happened to write).
func shuffledSnapshot(t *testing.T, rng *rand.Rand, snap *lang.Snapshot, format string) []byte {
	t.Helper()
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	keys := func(m map[string]string) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		return ks
	}
	git := map[string]string{}
	for u, n := range snap.GitCustomNodes {
		git[u] = n.Hash
	}
	if format == "json" {
		b.WriteString("{\n    \"comfyui\": " + q(snap.ComfyUI) + ",\n    \"git_custom_nodes\": {")
		for i, u := range keys(git) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n        " + q(u) + ": {\"hash\": " + q(git[u]) + ", \"disabled\": false}")
		}
		b.WriteString("\n    },\n    \"cnr_custom_nodes\": {")
		for i, id := range keys(snap.CNRCustomNodes) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n        " + q(id) + ": " + q(snap.CNRCustomNodes[id]))
		}
		b.WriteString("\n    },\n    \"file_custom_nodes\": [],\n    \"pips\": {}\n}\n")
		return []byte(b.String())
	}
	b.WriteString("custom_nodes:\n  cnr_custom_nodes:")
	if len(snap.CNRCustomNodes) == 0 {
		b.WriteString(" {}")
	}
	for _, id := range keys(snap.CNRCustomNodes) {
		b.WriteString("\n    " + id + ": " + snap.CNRCustomNodes[id])
	}
	b.WriteString("\n  comfyui: " + snap.ComfyUI + "\n  file_custom_nodes: []\n  git_custom_nodes:")
	if len(git) == 0 {
		b.WriteString(" {}")
	}
	for _, u := range keys(git) {
		b.WriteString("\n    " + u + ":\n      disabled: false\n      hash: '" + git[u] + "'")
	}
	b.WriteString("\n  pips: {}\n")
	return []byte(b.String())
}
