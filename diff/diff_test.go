package diff

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestCompareVersions(t *testing.T) {
	ordered := []string{"1.0.dev1", "1.0a1", "1.0a2.dev1", "1.0b1", "1.0rc1", "1.0", "1.0+cu121", "1.0.post1", "1.1", "1.10", "2!0.1"}
	for i := range ordered {
		for j := range ordered {
			want := cmpInt(i, j)
			if got := compareVersions(ordered[i], ordered[j]); got != want {
				t.Errorf("compareVersions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if compareVersions("1.0.0", "1.0") != 0 {
		t.Error("1.0.0 and 1.0 should be equal")
	}
}

type fakeObjects map[string]int64

func (f fakeObjects) Size(p string) (int64, bool) { n, ok := f[p]; return n, ok }

type fakeHistory map[[2]string]int

func (f fakeHistory) Distance(repo, from, to string) (int, bool) {
	n, ok := f[[2]string{from, to}]
	return n, ok
}

func lockA() *specs.Lock {
	return &specs.Lock{
		LockVersion: 1, VersionID: "v1",
		Comfy: specs.GitLock{Repo: "https://github.com/comfyanonymous/ComfyUI", Commit: "1111111111111111111111111111111111111111", StorePath: "aaa-comfyui"},
		CustomNodes: []specs.NodeLock{
			{Name: "impact", GitLock: specs.GitLock{Repo: "https://example.com/impact.git", Commit: "2222222222222222222222222222222222222222", StorePath: "bbb-impact"}},
			{Name: "old-node", GitLock: specs.GitLock{Repo: "https://example.com/old.git", Commit: "3333333333333333333333333333333333333333", StorePath: "ccc-old-node"}},
		},
		Models: []specs.ModelLock{
			{Target: "checkpoints/base.safetensors", Checksum: "sha256:" + sixtyFour('a'), Size: 1000, StorePath: "ddd-base.safetensors"},
			{Target: "loras/style.safetensors", Checksum: "sha256:" + sixtyFour('b'), Size: 200, StorePath: "eee-style.safetensors"},
		},
		Python: &specs.PythonLock{
			Interpreter: specs.PythonIdentity{Version: "3.11.7", Implementation: "cpython", ABI: "cp311", Platform: "linux_x86_64"},
			Packages: []specs.PackageLock{
				{Name: "numpy", Version: "1.26.4", SHA256: "n1"},
				{Name: "torch", Version: "2.5.1", SHA256: "t1"},
				{Name: "six", Version: "1.16.0", SHA256: "s1"},
				{Name: "Pillow", Version: "10.0.0", SHA256: "p1"},
			},
		},
		Env: map[string]string{"HF_HOME": "/workspace/hf", "COMFY_LOG": "info"},
	}
}

func lockB() *specs.Lock {
	l := lockA()
	l.VersionID = "v2"
	l.Comfy.Commit = "4444444444444444444444444444444444444444"
	l.Comfy.StorePath = "fff-comfyui"
	l.CustomNodes = []specs.NodeLock{
		{Name: "impact", GitLock: specs.GitLock{Repo: "https://example.com/impact.git", Commit: "5555555555555555555555555555555555555555", StorePath: "ggg-impact"}, Writable: true},
		{Name: "new-node", GitLock: specs.GitLock{Repo: "https://example.com/new.git", Commit: "6666666666666666666666666666666666666666", StorePath: "hhh-new-node"}},
	}
	l.Models = []specs.ModelLock{
		{Target: "checkpoints/base.safetensors", Checksum: "sha256:" + sixtyFour('c'), Size: 1500, StorePath: "iii-base.safetensors"},
		{Target: "vae/vae.safetensors", Checksum: "sha256:" + sixtyFour('d'), Size: 300, StorePath: "jjj-vae.safetensors"},
	}
	l.Python = &specs.PythonLock{
		Interpreter: l.Python.Interpreter,
		Packages: []specs.PackageLock{
			{Name: "numpy", Version: "2.0.0", SHA256: "n2"},
			{Name: "torch", Version: "2.4.0", SHA256: "t2"},
			{Name: "pillow", Version: "10.0.0", SHA256: "p2"},
			{Name: "requests", Version: "2.31.0", SHA256: "r1"},
		},
	}
	l.Env = map[string]string{"HF_HOME": "/runpod-volume/hf", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
	return l
}

func sixtyFour(c byte) string { return string(bytes.Repeat([]byte{c}, 64)) }

func TestCompare(t *testing.T) {
	objs := fakeObjects{"aaa-comfyui": 100, "bbb-impact": 10, "ccc-old-node": 20, "ddd-base.safetensors": 1000, "eee-style.safetensors": 200,
		"fff-comfyui": 110, "ggg-impact": 12}
	hist := fakeHistory{{"1111111111111111111111111111111111111111", "4444444444444444444444444444444444444444"}: 7}
	r := Compare(Side{Label: "v1", Lock: lockA()}, Side{Label: "v2", Lock: lockB()}, Options{Objects: objs, History: hist})

	seven := 7
	want := &Report{
		A: "v1", B: "v2",
		Comfy:       &CommitChange{Repo: "https://github.com/comfyanonymous/ComfyUI", From: "1111111111111111111111111111111111111111", To: "4444444444444444444444444444444444444444", Distance: &seven},
		NodesAdded:  []Node{{Name: "new-node", Repo: "https://example.com/new.git", Commit: "6666666666666666666666666666666666666666"}},
		NodesRemove: []Node{{Name: "old-node", Repo: "https://example.com/old.git", Commit: "3333333333333333333333333333333333333333"}},
		NodesMoved: []NodeChange{{Name: "impact", CommitChange: CommitChange{Repo: "https://example.com/impact.git",
			From: "2222222222222222222222222222222222222222", To: "5555555555555555555555555555555555555555"}}},
		Packages: []PackageChange{
			{Name: "numpy", Change: "upgraded", From: "1.26.4", To: "2.0.0"},
			{Name: "pillow", Change: "changed", From: "10.0.0", To: "10.0.0"},
			{Name: "requests", Change: "added", To: "2.31.0"},
			{Name: "six", Change: "removed", From: "1.16.0"},
			{Name: "torch", Change: "downgraded", From: "2.5.1", To: "2.4.0"},
		},
		Models: []ModelChange{
			{Target: "checkpoints/base.safetensors", Change: "changed", FromChecksum: "sha256:" + sixtyFour('a'), ToChecksum: "sha256:" + sixtyFour('c'), FromSize: 1000, ToSize: 1500},
			{Target: "loras/style.safetensors", Change: "removed", FromChecksum: "sha256:" + sixtyFour('b'), FromSize: 200},
			{Target: "vae/vae.safetensors", Change: "added", ToChecksum: "sha256:" + sixtyFour('d'), ToSize: 300},
		},
		Env: []EnvChange{
			{Name: "COMFY_LOG", Change: "removed", From: "info"},
			{Name: "HF_HOME", Change: "changed", From: "/workspace/hf", To: "/runpod-volume/hf"},
			{Name: "PYTORCH_CUDA_ALLOC_CONF", Change: "added", To: "expandable_segments:True"},
		},
		Settings: []SettingChange{{Field: "custom_nodes.impact.writable", From: "false", To: "true"}},
		// B: fff 110 + ggg 12 in the store; hhh unknown; iii 1500 and jjj 300 known from the lock, new.
		Size: SizeChange{TotalA: 1330, TotalB: 1922, Delta: 592, NewToStore: 1800, Known: false},
	}
	if d := cmp.Diff(want, r); d != "" {
		t.Fatalf("Compare (-want +got):\n%s", d)
	}

	same := Compare(Side{Label: "v1", Lock: lockA()}, Side{Label: "v1 again", Lock: lockA()}, Options{Objects: objs})
	if !same.Empty() {
		t.Errorf("a lock compared with itself is not empty: %+v", same)
	}

	// Two versions that differ only in env are not "no changes" (they build other roots).
	envOnly := lockA()
	envOnly.Env = map[string]string{"HF_HOME": "/workspace/hf"}
	r = Compare(Side{Label: "v1", Lock: lockA()}, Side{Label: "v1-env", Lock: envOnly}, Options{})
	if r.Empty() || len(r.Env) != 1 || r.Env[0].Name != "COMFY_LOG" || r.Env[0].Change != "removed" {
		t.Errorf("env-only change: %+v", r.Env)
	}
}

// TestCompareSettings covers the root inputs outside the sections: a model's store name and
// size for the same bytes, the installer, the system site-packages and skip_models.
func TestCompareSettings(t *testing.T) {
	a, b := lockA(), lockA()
	a.Models[0].StorePath = strings.Repeat("0", 32) + "-base.safetensors"
	b.Models[0].StorePath = strings.Repeat("1", 32) + "-renamed.safetensors"
	b.Models[1].Size = 0
	b.CustomNodes[1].Submodules = true
	a.Python.Installer, b.Python.Installer = "pip 24.0", "pip 25.1"
	a.Python.SystemSitePackages = []specs.Distribution{{Name: "torch", Version: "2.5.1"}}
	b.Python.SystemSitePackages = []specs.Distribution{{Name: "Torch", Version: "2.6.0"}, {Name: "triton", Version: "3.0.0"}}
	r := Compare(Side{Label: "a", Lock: a, SystemSitePackages: true}, Side{Label: "b", Lock: b, SystemSitePackages: true, SkipModels: true}, Options{})
	want := []SettingChange{
		{Field: "custom_nodes.old-node.submodules", From: "false", To: "true"},
		{Field: "models.checkpoints/base.safetensors.file", From: "base.safetensors", To: "renamed.safetensors"},
		{Field: "models.loras/style.safetensors.size", From: "200", To: "0"},
		{Field: "options.skip_models", From: "false", To: "true"},
		{Field: "python.installer", From: "pip 24.0", To: "pip 25.1"},
		{Field: "python.site_packages.torch", From: "2.5.1", To: "2.6.0"},
		{Field: "python.site_packages.triton", From: "", To: "3.0.0"},
	}
	if d := cmp.Diff(want, r.Settings); d != "" {
		t.Errorf("settings (-want +got):\n%s", d)
	}
}

// TestRender checks both output forms against golden files (go test -update rewrites them).
func TestRender(t *testing.T) {
	seven := 7
	r := Compare(Side{Label: "v1", Lock: lockA()}, Side{Label: "v2", Lock: lockB()}, Options{
		Objects: fakeObjects{"aaa-comfyui": 100, "fff-comfyui": 110},
		History: fakeHistory{{"1111111111111111111111111111111111111111", "4444444444444444444444444444444444444444"}: seven},
	})
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"report.txt": text.Bytes(), "report.json": append(js, '\n')} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 6979321856: "6.5 GiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// Registry nodes are compared by version: an upgrade 1.2.0 -> 1.3.1, a downgrade, a switch
// from git to the registry, a node added and removed by id, and an archive published again.
func TestCompareRegistryNodes(t *testing.T) {
	reg := func(name, id, v, sum string) specs.NodeLock {
		return specs.NodeLock{Name: name, Registry: &specs.RegistryLock{ID: id, Request: "latest", Version: v, URL: "https://cdn.example/" + id + "/" + v + ".zip", SHA256: "sha256:" + sixtyFour(sum[0])}}
	}
	git := func(name, commit string) specs.NodeLock {
		return specs.NodeLock{Name: name, GitLock: specs.GitLock{Repo: "https://example.com/" + name + ".git", Commit: commit}}
	}
	a := &specs.Lock{LockVersion: 1, VersionID: "a", CustomNodes: []specs.NodeLock{
		reg("impact", "comfyui-impact-pack", "1.2.0", "a"), reg("kj", "comfyui-kjnodes", "2.0.0", "b"),
		git("ess", "4444444444444444444444444444444444444444"), reg("gone", "gone-node", "0.1.0", "c"),
		reg("same", "same-node", "1.0.0", "d"),
	}}
	b := &specs.Lock{LockVersion: 1, VersionID: "b", CustomNodes: []specs.NodeLock{
		reg("impact", "comfyui-impact-pack", "1.3.1", "e"), reg("kj", "comfyui-kjnodes", "1.9.0", "f"),
		reg("ess", "comfyui_essentials", "1.1.0", "0"), reg("new", "new-node", "3.0.0", "1"),
		reg("same", "same-node", "1.0.0", "2"),
	}}
	r := Compare(Side{Label: "a", Lock: a}, Side{Label: "b", Lock: b}, Options{})
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"+ new new-node@3.0.0 (registry)",
		"- gone gone-node@0.1.0",
		"~ ess 444444444444 -> comfyui_essentials@1.1.0",
		"^ impact 1.2.0 -> 1.3.1 (comfyui-impact-pack)",
		"v kj 2.0.0 -> 1.9.0 (comfyui-kjnodes)",
		"~ custom_nodes.same.archive sha256:" + sixtyFour('d') + " -> sha256:" + sixtyFour('2'),
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "~ same") {
		t.Errorf("a node at the same version is listed as moved:\n%s", buf.String())
	}
}
