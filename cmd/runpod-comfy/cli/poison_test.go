package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/cache"
)

// poisonFixture is a version (ComfyUI, one node, one model) built on root1 and pushed, signed,
// to an honest file:// cache, plus a signing key the tests trust.
type poisonFixture struct {
	work, vdir, root1, good, lock, pub string
	sk                                 cache.SecretKey
	lk                                 *specs.Lock
	st1                                *store.Store
	gitPath, modelPath, rootPath       store.Path
}

func newPoisonFixture(t *testing.T) *poisonFixture {
	t.Helper()
	f := &poisonFixture{work: t.TempDir()}
	cmd := exec.Command("sh", "-c", `set -e
for r in comfy node-a; do
  git init -q -b main repos/$r
  mkdir -p repos/$r/comfy
  echo "# $r" > repos/$r/main.py; echo "x = 1" > repos/$r/comfy/cli_args.py
  git -C repos/$r add -A; git -C repos/$r commit -q -m init
done
mkdir versions files
printf 'model weights\n' > files/m.safetensors`)
	cmd.Dir = f.work
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sum := sha256.Sum256([]byte("model weights\n"))
	spec := fmt.Sprintf(`{"schema_version": 2, "version_id": "demo",
  "comfy": {"repo": "%[1]s/repos/comfy", "commit": "main"},
  "custom_nodes": [{"name": "node-a", "repo": "%[1]s/repos/node-a", "ref": "main"}],
  "models": [{"source": "%[1]s/files/m.safetensors", "target_subdir": "checkpoints", "checksum": "sha256:%[2]s"}]}`, f.work, hex.EncodeToString(sum[:]))
	f.vdir = filepath.Join(f.work, "versions")
	if err := os.WriteFile(filepath.Join(f.vdir, "demo.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNPOD_COMFY_SUBSTITUTERS", "")
	t.Setenv("RUNPOD_COMFY_TRUSTED_KEYS", "")
	f.root1 = filepath.Join(f.work, "root1")
	f.good = filepath.Join(f.work, "good-cache")
	f.must(t, "--root", f.root1, "--versions-dir", f.vdir, "build", "demo")
	f.must(t, "cache", "keygen", "team-1", "--out-dir", filepath.Join(f.work, "keys"))
	f.must(t, "--root", f.root1, "push", "demo", "--to", f.good, "--sign-key", filepath.Join(f.work, "keys", "team-1.secret"))
	pub, err := os.ReadFile(filepath.Join(f.work, "keys", "team-1.public"))
	if err != nil {
		t.Fatal(err)
	}
	f.pub = strings.TrimSpace(string(pub))
	sec, err := os.ReadFile(filepath.Join(f.work, "keys", "team-1.secret"))
	if err != nil {
		t.Fatal(err)
	}
	if f.sk, err = cache.ParseSecretKey(strings.TrimSpace(string(sec))); err != nil {
		t.Fatal(err)
	}
	f.lock = filepath.Join(f.root1, "cache", "runpod-comfy", "resolved", "demo.lock.json")
	if f.lk, err = specs.ReadLock(f.lock); err != nil {
		t.Fatal(err)
	}
	if f.st1, err = store.Open(f.root1); err != nil {
		t.Fatal(err)
	}
	f.gitPath = mustParsePath(t, f.lk.Comfy.StorePath)
	f.modelPath = mustParsePath(t, f.lk.Models[0].StorePath)
	if f.rootPath, err = f.st1.RootOf("demo"); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustParsePath(t *testing.T, s string) store.Path {
	t.Helper()
	p, err := store.ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *poisonFixture) must(t *testing.T, args ...string) {
	t.Helper()
	if code := run(context.Background(), args); code != 0 {
		t.Fatalf("runpod-comfy %s: exit %d", strings.Join(args, " "), code)
	}
}

// poisonedCache makes a cache holding, under the store paths of the git source and the model,
// other bytes, with narinfos validly signed by the trusted key: what a cache whose signing key
// leaked, or a careless pusher, serves.
func (f *poisonFixture) poisonedCache(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	scratch, err := store.Open(filepath.Join(f.work, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scratch.Add(ctx, f.gitPath, store.AddOptions{Kind: "git", CA: "git:" + f.lk.Comfy.Commit}, func(ctx context.Context, out string) error {
		if err := os.MkdirAll(filepath.Join(out, "comfy"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, "main.py"), []byte("import os; os.system('evil')\n"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := scratch.Add(ctx, f.modelPath, store.AddOptions{Kind: "model"}, func(ctx context.Context, out string) error {
		return os.WriteFile(out, []byte("other weights\n"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.work, "bad-cache")
	if _, err := cache.Push(ctx, scratch, cache.NewFileBackend(dir), []store.Path{f.gitPath, f.modelPath}, cache.PushOptions{SignKey: &f.sk}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkLike checks that p in st has root1's NAR hash (the right bytes) and the given source.
func (f *poisonFixture) checkLike(t *testing.T, st *store.Store, p store.Path, source string) {
	t.Helper()
	want, _ := f.st1.Meta(p)
	got, err := st.Meta(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if got.NarHash != want.NarHash {
		t.Errorf("%s registered with NAR hash %s, want %s (the poisoned bytes were registered)", p, got.NarHash, want.NarHash)
	}
	if got.Source != source {
		t.Errorf("%s: source %q, want %q", p, got.Source, source)
	}
}

// TestSubstitutionRefusesWhatTheLockDoesNotPin: a validly signed cache entry whose bytes are
// not what the lock pins (a git source with another NAR hash, a model file with another
// sha256) is never registered; the next cache is used, or the object is built from source.
func TestSubstitutionRefusesWhatTheLockDoesNotPin(t *testing.T) {
	f := newPoisonFixture(t)
	bad := f.poisonedCache(t)

	// The poisoned cache first, the honest one second: both objects come from the second.
	root2 := filepath.Join(f.work, "root2")
	f.must(t, "--root", root2, "--versions-dir", f.vdir, "build", "demo", "--lock", f.lock,
		"--substituter", bad, "--substituter", f.good, "--trusted-key", f.pub)
	st2, _ := store.Open(root2)
	f.checkLike(t, st2, f.gitPath, "substituted:file://"+f.good)
	f.checkLike(t, st2, f.modelPath, "substituted:file://"+f.good)

	// The poisoned cache alone: both are built from source.
	root3 := filepath.Join(f.work, "root3")
	f.must(t, "--root", root3, "--versions-dir", f.vdir, "build", "demo", "--lock", f.lock,
		"--substituter", bad, "--trusted-key", f.pub)
	st3, _ := store.Open(root3)
	f.checkLike(t, st3, f.gitPath, "built")
	f.checkLike(t, st3, f.modelPath, "built")
	b, err := os.ReadFile(filepath.Join(root3, "builds", "comfy-demo", "models", "checkpoints", "m.safetensors"))
	if err != nil || string(b) != "model weights\n" {
		t.Errorf("model in the root: %q %v", b, err)
	}
}

// TestVerifyFindsPoisonedModel: a model registered (by an older version, or by hand) with
// bytes that are not its content address is reported by store verify, though its NAR hash
// matches its metadata.
func TestVerifyFindsPoisonedModel(t *testing.T) {
	f := newPoisonFixture(t)
	bad := f.poisonedCache(t)
	root := filepath.Join(f.work, "rootv")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	// What an unchecked substitution registered: the cache's narinfo, the cache's bytes.
	sub := &cache.Substituter{Caches: []cache.Backend{cache.NewFileBackend(bad)}, TrustedKeys: []cache.PublicKey{f.sk.Public()}}
	if _, err := sub.Substitute(context.Background(), st, f.modelPath); err != nil {
		t.Fatal(err)
	}
	// The narinfo named no CA and kind "model": verify checks the file against the path.
	check := func(what string) {
		t.Helper()
		rep, err := st.Verify(context.Background(), store.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range rep.Problems {
			if p.Path == f.modelPath.String() && p.Kind == "content-address" {
				found = true
			}
		}
		if !found {
			t.Errorf("verify of a model whose bytes are not its checksum (%s): %+v", what, rep.Problems)
		}
	}
	check("no content address in the metadata")
	// With the CA and derivation the builder records, the fingerprint names the checksum.
	m, _ := f.st1.Meta(f.modelPath)
	file := filepath.Join(root, "store", ".meta", f.modelPath.Digest().String()+".json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	raw["ca"], raw["derivation"] = m.CA, m.Derivation
	b, _ = json.Marshal(raw)
	os.Remove(file)
	os.WriteFile(file, b, 0o444)
	check("content address in the metadata")
}

// TestNarinfoLeavingOutAReference: a signed narinfo of the runtime root that leaves out a
// reference (the node) is refused, so the root's metadata names everything it links to and
// gc (grace 0) keeps all of it: the root still works.
func TestNarinfoLeavingOutAReference(t *testing.T) {
	f := newPoisonFixture(t)
	key := filepath.Join(f.good, f.rootPath.Digest().String()+".narinfo")
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := cache.ParseNarInfo(data, key)
	if err != nil {
		t.Fatal(err)
	}
	node := mustParsePath(t, f.lk.CustomNodes[0].StorePath)
	var refs []store.Path
	for _, r := range ni.References {
		if r != node {
			refs = append(refs, r)
		}
	}
	if len(refs) == len(ni.References) {
		t.Fatalf("root narinfo does not reference %s: %v", node, ni.References)
	}
	ni.References, ni.Sigs = refs, nil
	if err := ni.Sign(f.sk); err != nil {
		t.Fatal(err)
	}
	text, _ := ni.MarshalText()
	os.Remove(key)
	if err := os.WriteFile(key, text, 0o644); err != nil {
		t.Fatal(err)
	}

	root2 := filepath.Join(f.work, "root2")
	f.must(t, "--root", root2, "--versions-dir", f.vdir, "build", "demo", "--lock", f.lock,
		"--substituter", f.good, "--trusted-key", f.pub)
	f.must(t, "--root", root2, "gc", "--grace", "0s")
	st2, _ := store.Open(root2)
	if !st2.Valid(node) {
		t.Errorf("gc deleted %s, which the root links to", node)
	}
	for _, rel := range []string{"comfyui/main.py", "custom_nodes/node-a/main.py", "models/checkpoints/m.safetensors"} {
		if _, err := os.Stat(filepath.Join(root2, "builds", "comfy-demo", rel)); err != nil {
			t.Errorf("the root after gc: %v", err)
		}
	}
	m, err := st2.Meta(f.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.References, node) {
		t.Errorf("root references %v, want %s among them", m.References, node)
	}
}
