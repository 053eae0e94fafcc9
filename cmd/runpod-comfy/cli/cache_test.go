package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// TestCacheGCSRoundTrip builds a version, pushes it to fake-gcs-server (in-process, reached by
// the real GCS client through $STORAGE_EMULATOR_HOST) and builds it on an empty root from the
// GCS cache alone, with the git repositories gone; every digest and NAR hash must match.
func TestCacheGCSRoundTrip(t *testing.T) {
	work := t.TempDir()
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh(`set -e
for r in comfy node-a; do
  git init -q -b main repos/$r
  mkdir -p repos/$r/comfy
  echo "# $r" > repos/$r/main.py; echo "x = 1" > repos/$r/comfy/cli_args.py
  git -C repos/$r add -A; git -C repos/$r commit -q -m init
done
mkdir versions`)
	spec := fmt.Sprintf(`{"schema_version": 2, "version_id": "demo",
  "comfy": {"repo": "%[1]s/repos/comfy", "commit": "main"},
  "custom_nodes": [{"name": "node-a", "repo": "%[1]s/repos/node-a", "ref": "main"}]}`, work)
	if err := os.WriteFile(filepath.Join(work, "versions", "demo.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}

	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "team-bucket"})
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	t.Setenv("RUNPOD_COMFY_SUBSTITUTERS", "")
	t.Setenv("RUNPOD_COMFY_TRUSTED_KEYS", "")

	ctx := context.Background()
	root1, root2 := filepath.Join(work, "root1"), filepath.Join(work, "root2")
	vdir := filepath.Join(work, "versions")
	must := func(args ...string) {
		t.Helper()
		if code := run(ctx, args); code != 0 {
			t.Fatalf("runpod-comfy %s: exit %d", strings.Join(args, " "), code)
		}
	}
	must("--root", root1, "--versions-dir", vdir, "build", "demo")
	must("cache", "keygen", "gcs-1", "--out-dir", filepath.Join(work, "keys"))
	must("--root", root1, "push", "demo", "--to", "gs://team-bucket/comfy", "--sign-key", filepath.Join(work, "keys", "gcs-1.secret"))
	pub, err := os.ReadFile(filepath.Join(work, "keys", "gcs-1.public"))
	if err != nil {
		t.Fatal(err)
	}
	sh("rm -rf repos")
	lock := filepath.Join(root1, "cache", "runpod-comfy", "resolved", "demo.lock.json")
	must("--root", root2, "--versions-dir", vdir, "build", "demo", "--lock", lock,
		"--substituter", "gs://team-bucket/comfy", "--trusted-key", strings.TrimSpace(string(pub)))

	st1, err := store.Open(root1)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(root2)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := st1.RootOf("demo")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := st2.RootOf("demo")
	if err != nil || r2 != r1 {
		t.Fatalf("root on the second volume: %s %v, want %s", r2, err, r1)
	}
	closure, err := st1.Closure(r1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range closure {
		a, _ := st1.Meta(p)
		b, err := st2.Meta(p)
		if err != nil {
			t.Fatalf("%s missing on the second volume: %v", p, err)
		}
		if a.NarHash != b.NarHash || a.NarSize != b.NarSize {
			t.Errorf("%s: NAR %s/%d vs %s/%d", p, a.NarHash, a.NarSize, b.NarHash, b.NarSize)
		}
		if b.Source != "substituted:gs://team-bucket/comfy" {
			t.Errorf("%s: source %q", p, b.Source)
		}
	}
}
