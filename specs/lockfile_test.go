package specs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleLock() *Lock {
	return &Lock{
		LockVersion: LockVersion, VersionID: "x", SpecHash: "sha256:" + strings.Repeat("ab", 32),
		Comfy: GitLock{Repo: "https://github.com/comfyanonymous/ComfyUI", Commit: strings.Repeat("1", 40)},
		CustomNodes: []NodeLock{
			{Name: "zeta", GitLock: GitLock{Repo: "https://github.com/a/zeta", Commit: strings.Repeat("2", 40)}, InstallRequirements: true},
			{Name: "alpha", GitLock: GitLock{Repo: "https://github.com/a/alpha", Ref: "main", Commit: strings.Repeat("3", 40)}},
		},
		Models: []ModelLock{
			{Target: "vae/v.safetensors", Source: "https://e.com/v.safetensors", Checksum: "sha256:" + strings.Repeat("c", 64), Size: 10},
			{Target: "checkpoints/c.safetensors", Source: "https://e.com/c.safetensors", Checksum: "sha256:" + strings.Repeat("d", 64), Size: 20},
		},
		Python: &PythonLock{
			Interpreter: PythonIdentity{Version: "3.11.2", Implementation: "cpython", ABI: "cp311", Platform: "linux_x86_64", Path: "/usr/bin/python3.11"},
			Packages: []PackageLock{
				{Name: "Pillow", Version: "10.0.0", URL: "https://files/p.whl", SHA256: strings.Repeat("e", 64)},
				{Name: "numpy", Version: "1.26.4", URL: "https://files/n.whl", SHA256: strings.Repeat("f", 64)},
				{Name: "aiohttp", Version: "3.9.0", URL: "https://files/a.whl", SHA256: strings.Repeat("0", 64)},
			},
		},
	}
}

func TestLockWriteReadStable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.lock.json")
	l := sampleLock()
	if err := l.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	if l.CustomNodes[0].Name != "zeta" {
		t.Error("WriteFile reordered the caller's lock")
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != string(data) {
		t.Error("Marshal and WriteFile differ")
	}
	s := string(data)
	if !strings.HasSuffix(s, "}\n") || !strings.Contains(s, "\n  \"lock_version\": 1,") {
		t.Errorf("not 2-space indented JSON with a trailing newline:\n%s", s)
	}
	order := []string{`"alpha"`, `"zeta"`, `"checkpoints/c.safetensors"`, `"vae/v.safetensors"`, `"aiohttp"`, `"numpy"`, `"Pillow"`}
	last := -1
	for _, o := range order {
		i := strings.Index(s, o)
		if i < last {
			t.Errorf("%s out of order in\n%s", o, s)
		}
		last = i
	}
	got, err := ReadLock(p)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.Marshal()
	if diff := cmp.Diff(string(data), string(again)); diff != "" {
		t.Errorf("read then written differs (-first +second):\n%s", diff)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(matches) != 0 {
		t.Errorf("temp files left behind: %v", matches)
	}
}

func TestReadLockRefusesOtherVersions(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"v2.json":      `{"lock_version": 2, "version_id": "x"}`,
		"none.json":    `{"version_id": "x"}`,
		"unknown.json": `{"lock_version": 1, "version_id": "x", "surprise": true}`,
		"garbage.json": `not json`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadLock(p)
		if err == nil {
			t.Errorf("%s: ReadLock accepted it", name)
			continue
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
		if (name == "v2.json" || name == "none.json") != errors.Is(err, ErrLockVersion) {
			t.Errorf("%s: errors.Is(err, ErrLockVersion) wrong for %v", name, err)
		}
	}
}

// TestReadLockRefusesHugeFile: a lock file is read up to inputfile.MaxLock, not whole.
func TestReadLockRefusesHugeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4 << 30) // sparse: 4 GiB that would all be read into memory
	f.Close()
	if _, err := ReadLock(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("want a too-large error, got %v", err)
	}
}
