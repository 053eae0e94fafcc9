package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/builder/registry"
	"github.com/runpod-comfy/runpod-comfy/internal/registrytest"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// registryNodeFiles are the files of a registry node's archive at version v.
func registryNodeFiles(v string) map[string]string {
	return map[string]string{
		"__init__.py":      "NODE_CLASS_MAPPINGS = {}\nVERSION = '" + v + "'\n",
		"pyproject.toml":   "[project]\nname = \"comfyui-impact-pack\"\nversion = \"" + v + "\"\n",
		"requirements.txt": "alpha>=1\n",
		"install.sh*":      "#!/bin/sh\necho hi\n",
		"web/":             "",
		"web/impact.js":    "// js\n",
	}
}

// registryFixture is a loopback registry whose nodes a test may change.
type registryFixture struct {
	*registrytest.Server
	mu    sync.Mutex
	nodes map[string]registrytest.Node
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	rf := &registryFixture{nodes: map[string]registrytest.Node{
		"comfyui-impact-pack": {Versions: []registrytest.Version{
			{Version: "1.2.0", Files: registryNodeFiles("1.2.0")},
			{Version: "2.0.0", Files: registryNodeFiles("2.0.0")},
		}},
	}}
	rf.Server = registrytest.Start(func() (map[string]registrytest.Node, error) {
		rf.mu.Lock()
		defer rf.mu.Unlock()
		return rf.nodes, nil
	})
	t.Cleanup(rf.Close)
	return rf
}

// publish adds version v of id (or replaces its archive, as a tampered bucket would).
func (rf *registryFixture) publish(id string, v registrytest.Version) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	n := rf.nodes[id]
	vs := []registrytest.Version{}
	for _, old := range n.Versions {
		if old.Version != v.Version {
			vs = append(vs, old)
		}
	}
	n.Versions = append(vs, v)
	rf.nodes[id] = n
}

// TestBuildRegistryNode builds a spec mixing git nodes and a registry node from a loopback
// registry: the lock pins the version the range allows, the archive's sha256 and the NAR
// hash; the node's requirements join the one pip resolution; a later build refuses an archive
// that no longer matches the lock; resolve --update moves the node within its range.
func TestBuildRegistryNode(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rf := newRegistryFixture(t)
	links := filepath.Join(t.TempDir(), "wheels")
	if err := wheeltest.WriteAll(links, wheeltest.Wheel{Name: "alpha", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	ix := wheeltest.NewIndex(links)
	defer ix.Close()
	no := false
	spec := f.spec("mixed")
	spec.Comfy.InstallRequirements = &no
	spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{
		Name: "impact", Registry: "comfyui-impact-pack", Version: "^1.2.0",
		Pos: specs.Pos{File: "versions/mixed.json", Line: 7, Col: 5},
	})
	spec.Python = &specs.Python{IndexURL: ix.SimpleURL()}
	root := filepath.Join(t.TempDir(), "root")
	opts := BuildOptions{Root: root, Spec: spec, Jobs: 2, RegistryURL: rf.URL, Environ: os.Environ(), GitToken: "s3cret-git-token"}
	res, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var impact specs.NodeLock
	for _, n := range res.Lock.CustomNodes {
		if n.Name == "impact" {
			impact = n
		}
	}
	wantSum := "sha256:" + sha256Hex(registrytest.Zip(registryNodeFiles("1.2.0")))
	if r := impact.Registry; r == nil || r.Version != "1.2.0" || r.Request != "^1.2.0" || r.SHA256 != wantSum ||
		r.URL != rf.Files+"/comfyui-impact-pack/1.2.0/node.zip" || impact.NarHash == "" || impact.StorePath == "" || impact.Repo != "" {
		t.Fatalf("lock of the registry node: %+v %+v, want 1.2.0 with %s", impact, impact.Registry, wantSum)
	}
	for _, n := range res.Nodes {
		if !n.OK {
			t.Errorf("node %s: %s", n.Name, n.Problem)
		}
	}
	// The node is linked from the root and unpacked; its requirement is in the venv's lock.
	dir := filepath.Join(res.Dir, "custom_nodes", "impact")
	if b, err := os.ReadFile(filepath.Join(dir, "__init__.py")); err != nil || !strings.Contains(string(b), "1.2.0") {
		t.Fatalf("unpacked node: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "install.sh")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("install.sh: %v %v, want mode 0555 in the store", fi, err)
	}
	p, err := store.ParsePath(impact.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	if wp, _ := store.PathFor(store.ArchiveFingerprint(registry.UnpackLogic, strings.TrimPrefix(wantSum, "sha256:"), "impact"), "impact"); wp != p {
		t.Errorf("store path %s, want the archive's fixed path %s", p, wp)
	}
	var alpha *specs.PackageLock
	for i, pk := range res.Lock.Python.Packages {
		if pk.Name == "alpha" {
			alpha = &res.Lock.Python.Packages[i]
		}
	}
	if alpha == nil || strings.Join(alpha.RequestedBy, ",") != "custom_nodes/impact/requirements.txt:1" {
		t.Fatalf("alpha in the python lock: %+v", alpha)
	}

	// No credential reached the registry or its download host.
	for _, rq := range rf.Requests() {
		if rq.Header.Get("Authorization") != "" || rq.Header.Get("Cookie") != "" {
			t.Errorf("%s %s carried credentials", rq.Host, rq.URL)
		}
	}

	// The bucket now serves another archive under the same version: a build on a fresh
	// volume from the same lock refuses it, naming the node.
	rf.publish("comfyui-impact-pack", registrytest.Version{Version: "1.2.0", Files: map[string]string{"__init__.py": "import os  # not what was locked\n"}})
	// (Without the venv, so that only the node is at stake: its pin is reused from a copy of
	// the lock.)
	root2 := filepath.Join(t.TempDir(), "root2")
	lock2 := filepath.Join(t.TempDir(), "lock2.json")
	if err := res.Lock.WriteFile(lock2); err != nil {
		t.Fatal(err)
	}
	spec2 := *spec
	spec2.Python = nil
	spec2.CustomNodes = append([]specs.CustomNode(nil), spec.CustomNodes...)
	spec2.CustomNodes[len(spec2.CustomNodes)-1].InstallRequirements = &no
	opts2 := opts
	opts2.Root, opts2.LockFile, opts2.Spec = root2, lock2, &spec2
	_, err = Build(ctx, opts2)
	var hm *registry.HashMismatchError
	if !errors.As(err, &hm) || !strings.Contains(err.Error(), `custom node "impact" (comfyui-impact-pack@1.2.0)`) {
		t.Fatalf("build with a changed archive: %v", err)
	}

	// resolve --update impact: 1.3.1 is published, 2.0.0 is outside ^1.2.0.
	rf.publish("comfyui-impact-pack", registrytest.Version{Version: "1.2.0", Files: registryNodeFiles("1.2.0")})
	rf.publish("comfyui-impact-pack", registrytest.Version{Version: "1.3.1", Files: registryNodeFiles("1.3.1")})
	opts.Update, opts.UpdateNames = true, []string{"impact"}
	res3, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res3.Lock.CustomNodes {
		switch {
		case n.Name == "impact" && (n.Registry == nil || n.Registry.Version != "1.3.1"):
			t.Errorf("after --update impact: %+v", n.Registry)
		case n.Name == "node-a" && n.Commit != f.aCommit:
			t.Errorf("node-a moved: %s", n.Commit)
		}
	}
	if res3.Root == res.Root {
		t.Error("the root did not change with the node's version")
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
