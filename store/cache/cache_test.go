package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// testClosure is a small version-like closure built with store.Add: a model file, a source
// tree, a venv referring to the source, and a root referring to all of them.
type testClosure struct {
	Model, Src, Venv, Root store.Path
	All                    []store.Path
}

func drvPath(t *testing.T, name string) store.Path {
	t.Helper()
	sum := sha256.Sum256([]byte("test derivation " + name))
	p, err := store.PathFor(store.DrvFingerprint(hex.EncodeToString(sum[:]), name), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustAdd(t *testing.T, st *store.Store, p store.Path, opts store.AddOptions, fn store.MakeFunc) {
	t.Helper()
	if _, err := st.Add(context.Background(), p, opts, fn); err != nil {
		t.Fatal(err)
	}
}

func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// buildTestClosure builds the closure; extra adds that many pseudo-random files of size
// bytes to the venv (for the crash test).
func buildTestClosure(t *testing.T, st *store.Store, suffix string, extraObjects int) testClosure {
	t.Helper()
	var c testClosure
	// The model is Nix's hello.txt test vector: its NAR hash is known.
	model := "hello.txt"
	sum := sha256.Sum256([]byte("Hello, World!\n"))
	mp, err := store.PathFor(store.FixedFingerprint("sha256", hex.EncodeToString(sum[:]), model), model)
	if err != nil {
		t.Fatal(err)
	}
	c.Model = mp
	mustAdd(t, st, mp, store.AddOptions{Kind: KindModel, CA: "fixed:sha256:" + store.Nix32(sum[:])}, func(ctx context.Context, out string) error {
		return os.WriteFile(out, []byte("Hello, World!\n"), 0o644)
	})
	c.Src = drvPath(t, "comfyui"+suffix)
	mustAdd(t, st, c.Src, store.AddOptions{Kind: "git", Derivation: []byte(`{"kind": "git", "commit": "abc"}`)}, func(ctx context.Context, out string) error {
		if err := writeFiles(out, map[string]string{
			"main.py":              strings.Repeat("import os\nprint('comfy')\n", 200),
			"comfy/cli_args.py":    "args = []\n",
			"bin/run":              "#!/bin/sh\necho run\n",
			"empty/.keep":          "",
			"models/checkpoints/x": "x",
		}); err != nil {
			return err
		}
		return os.Symlink("main.py", filepath.Join(out, "link.py"))
	})
	c.Venv = drvPath(t, "venv"+suffix)
	mustAdd(t, st, c.Venv, store.AddOptions{Kind: "venv", References: []store.Path{c.Src}}, func(ctx context.Context, out string) error {
		rng := rand.New(rand.NewPCG(1, 2))
		bin := make([]byte, 300<<10)
		for i := range bin {
			bin[i] = byte(rng.IntN(256))
		}
		if err := writeFiles(out, map[string]string{
			"lib/python3.11/site-packages/pkg/__init__.py": strings.Repeat("def f(x):\n    return x + 1\n", 500),
			"lib/python3.11/site-packages/pkg/_native.so":  string(bin),
			"bin/python": "#!/bin/sh\nexec python3 \"$@\"\n",
		}); err != nil {
			return err
		}
		return os.Symlink("../"+c.Src.String(), filepath.Join(out, "src"))
	})
	deps := []store.Path{c.Model, c.Src, c.Venv}
	for i := range extraObjects {
		p := drvPath(t, fmt.Sprintf("extra-%d%s", i, suffix))
		prev := deps[len(deps)-1]
		mustAdd(t, st, p, store.AddOptions{Kind: "venv", References: []store.Path{prev}}, func(ctx context.Context, out string) error {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			b := make([]byte, 256<<10)
			for j := range b {
				b[j] = byte(rng.IntN(256))
			}
			return os.WriteFile(out, b, 0o644)
		})
		deps = append(deps, p)
	}
	c.Root = drvPath(t, "comfy-test"+suffix)
	mustAdd(t, st, c.Root, store.AddOptions{Kind: "root", References: deps}, func(ctx context.Context, out string) error {
		if err := os.MkdirAll(filepath.Join(out, "models", "checkpoints"), 0o755); err != nil {
			return err
		}
		for _, l := range [][2]string{
			{"comfyui", "../" + c.Src.String()},
			{"venv", "../" + c.Venv.String()},
			{"models/checkpoints/hello.txt", "../../../" + c.Model.String()},
		} {
			if err := os.Symlink(l[1], filepath.Join(out, l[0])); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(out, "manifest.json"), []byte("{}\n"), 0o644)
	})
	c.All, err = st.Closure(c.Root)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	makeRemovable(t, dir)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// makeRemovable makes every directory under dir writable again when the test ends, so that
// t.TempDir can remove read-only store objects when the tests do not run as root.
func makeRemovable(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// checkSameObjects compares metadata and the NAR hash recomputed from disk of every path in
// two stores.
func checkSameObjects(t *testing.T, from, to *store.Store, paths []store.Path, wantSource string) {
	t.Helper()
	for _, p := range paths {
		a, err := from.Meta(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := to.Meta(p)
		if err != nil {
			t.Fatalf("%s not substituted: %v", p, err)
		}
		if a.NarHash != b.NarHash || a.NarSize != b.NarSize || !slices.Equal(a.References, b.References) || a.Kind != b.Kind || a.CA != b.CA {
			t.Errorf("%s: substituted metadata differs:\n%+v\n%+v", p, a, b)
		}
		if wantSource != "" && b.Source != wantSource {
			t.Errorf("%s: Source = %q, want %q", p, b.Source, wantSource)
		}
		h, n, err := nar.Hash(to.Abs(p))
		if err != nil || h != a.NarHash || n != a.NarSize {
			t.Errorf("%s on disk: %s %d %v; want %s %d", p, h, n, err, a.NarHash, a.NarSize)
		}
	}
}

func pushT(t *testing.T, st *store.Store, b Backend, paths []store.Path, key *SecretKey) *PushResult {
	t.Helper()
	var mu sync.Mutex
	var events []PushEvent
	res, err := Push(context.Background(), st, b, paths, PushOptions{SignKey: key, Jobs: 3, Progress: func(ev PushEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != res.Pushed+res.Skipped || events[len(events)-1].Done != len(events) {
		t.Fatalf("progress events %d, result %+v", len(events), res)
	}
	return res
}

func testPushSubstitute(t *testing.T, b Backend) {
	ctx := context.Background()
	src := openStore(t)
	c := buildTestClosure(t, src, "", 0)
	sk, pk, _ := GenerateKey("test-cache-1", nil)

	res := pushT(t, src, b, []store.Path{c.Root}, &sk)
	if res.Pushed != len(c.All) || res.Skipped != 0 {
		t.Fatalf("first push: %+v, closure %d", res, len(c.All))
	}
	// A second push finds everything in the cache.
	if res := pushT(t, src, b, []store.Path{c.Root}, &sk); res.Pushed != 0 || res.Skipped != len(c.All) {
		t.Fatalf("second push: %+v", res)
	}
	// The model is stored uncompressed: its narinfo's file fields are Nix's for hello.txt.
	s := &Substituter{Caches: []Backend{b}, TrustedKeys: []PublicKey{pk}}
	ni, err := s.FetchNarInfo(ctx, b, c.Model)
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "none" || ni.URL != "nar/0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60.nar" ||
		ni.FileHash != "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60" || ni.NarSize != 128 || ni.FileSize != 128 {
		t.Fatalf("model narinfo: %+v", ni)
	}
	ni, err = s.FetchNarInfo(ctx, b, c.Venv)
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "zstd" || !strings.HasSuffix(ni.URL, ".nar.zst") || ni.FileSize >= ni.NarSize || ni.Kind != "venv" ||
		ni.StorePath != "/runpod-comfy/store/"+c.Venv.String() || len(ni.References) != 1 {
		t.Fatalf("venv narinfo: %+v", ni)
	}

	dst := openStore(t)
	var warnings []string
	s.Warn = func(m string) { warnings = append(warnings, m) }
	m, err := s.Substitute(ctx, dst, c.Root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != c.Root || len(warnings) != 0 {
		t.Fatalf("substituted %s, warnings %v", m.Path, warnings)
	}
	checkSameObjects(t, src, dst, c.All, "substituted:"+b.URL())
	// Symlinks and the executable bit came through.
	if l, err := os.Readlink(filepath.Join(dst.Abs(c.Root), "venv")); err != nil || l != "../"+c.Venv.String() {
		t.Fatalf("venv link: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dst.Abs(c.Src), "bin/run")); err != nil || fi.Mode()&0o100 == 0 {
		t.Fatalf("bin/run not executable: %v", err)
	}
}

func TestPushSubstituteFile(t *testing.T) {
	testPushSubstitute(t, NewFileBackend(t.TempDir()))
}

func TestPushSubstituteGCS(t *testing.T) {
	b, err := OpenBackend("gs://cache/team", newFakeGCS(t))
	if err != nil {
		t.Fatal(err)
	}
	testPushSubstitute(t, b)
}

// corruptions applies one kind of damage to a pushed cache and checks that substitution
// refuses it with a clear message and falls back to the next, intact cache.
func TestSubstituteRefusesAndFallsBack(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	c := buildTestClosure(t, src, "", 0)
	sk, pk, _ := GenerateKey("test-cache-1", nil)
	good := NewFileBackend(t.TempDir())
	pushT(t, src, good, []store.Path{c.Root}, &sk)

	venvNarInfo := func(dir string) (string, *NarInfo) {
		p := filepath.Join(dir, c.Venv.Digest().String()+".narinfo")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := ParseNarInfo(data, p)
		if err != nil {
			t.Fatal(err)
		}
		return p, ni
	}
	rewrite := func(path string, edit func([]byte) []byte) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, edit(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		signed bool
		damage func(dir string)
		want   string
	}{
		{"tampered NAR", true, func(dir string) {
			// Recompress a changed NAR: the zstd stream is valid, the NAR hash is not.
			_, ni := venvNarInfo(dir)
			var buf bytes.Buffer
			dumpChanged(t, src.Abs(c.Venv), &buf)
			if err := os.WriteFile(filepath.Join(dir, ni.URL), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "does not match its narinfo: NAR hash"},
		{"flipped byte in the compressed file", true, func(dir string) {
			_, ni := venvNarInfo(dir)
			rewrite(filepath.Join(dir, ni.URL), func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
		}, "is truncated or corrupt"},
		{"truncated download", true, func(dir string) {
			_, ni := venvNarInfo(dir)
			rewrite(filepath.Join(dir, ni.URL), func(b []byte) []byte { return b[:len(b)/2] })
		}, "is truncated or corrupt"},
		{"tampered narinfo", true, func(dir string) {
			p, _ := venvNarInfo(dir)
			rewrite(p, func(b []byte) []byte {
				return []byte(strings.Replace(string(b), "References: "+c.Src.String(), "References: ", 1))
			})
		}, "signature by test-cache-1: signature does not verify"},
		{"missing signature", false, func(dir string) {}, "has no signature"},
		{"missing NAR", true, func(dir string) {
			_, ni := venvNarInfo(dir)
			os.Remove(filepath.Join(dir, ni.URL))
		}, "is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := NewFileBackend(t.TempDir())
			var key *SecretKey
			if tc.signed {
				key = &sk
			}
			pushT(t, src, bad, []store.Path{c.Root}, key)
			tc.damage(strings.TrimPrefix(bad.URL(), "file://"))

			// Alone, the damaged cache is refused and nothing is registered.
			dst := openStore(t)
			s := &Substituter{Caches: []Backend{bad}, TrustedKeys: []PublicKey{pk}}
			_, err := s.Substitute(ctx, dst, c.Venv)
			if !errors.Is(err, ErrNotSubstituted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant ErrNotSubstituted mentioning %q", err, tc.want)
			}
			if dst.Valid(c.Venv) {
				t.Fatal("refused object registered")
			}
			// With the intact cache second, substitution falls back to it.
			var warnings []string
			s = &Substituter{Caches: []Backend{bad, good}, TrustedKeys: []PublicKey{pk}, Warn: func(m string) { warnings = append(warnings, m) }}
			if _, err := s.Substitute(ctx, dst, c.Root); err != nil {
				t.Fatal(err)
			}
			if len(warnings) == 0 {
				t.Fatalf("no warning, want one mentioning %q", tc.want)
			}
			for _, w := range warnings {
				if !strings.Contains(w, tc.want) {
					t.Fatalf("warning %q, want one mentioning %q", w, tc.want)
				}
			}
			m, _ := dst.Meta(c.Venv)
			if m.Source != "substituted:"+good.URL() {
				t.Fatalf("venv came from %s", m.Source)
			}
			checkSameObjects(t, src, dst, []store.Path{c.Venv}, m.Source)
			checkSameObjects(t, src, dst, c.All, "")
		})
	}
}

// dumpChanged writes a zstd-compressed NAR of a copy of dir with one byte of one file changed.
func dumpChanged(t *testing.T, dir string, w *bytes.Buffer) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
		// os.CopyFS does not copy symlinks: drop them and compare anyway (the hash differs).
		t.Logf("copy: %v", err)
	}
	f := filepath.Join(cp, "lib/python3.11/site-packages/pkg/__init__.py")
	os.Chmod(f, 0o644)
	data, _ := os.ReadFile(f)
	data[0] ^= 1
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var narBuf bytes.Buffer
	if err := nar.Dump(&narBuf, cp); err != nil {
		t.Fatal(err)
	}
	enc := mustZstd(t, w)
	enc.Write(narBuf.Bytes())
	enc.Close()
}

func TestSubstituteUnsignedAllowed(t *testing.T) {
	src := openStore(t)
	c := buildTestClosure(t, src, "", 0)
	b := NewFileBackend(t.TempDir())
	pushT(t, src, b, []store.Path{c.Root}, nil)
	dst := openStore(t)
	s := &Substituter{Caches: []Backend{b}, AllowUnsigned: true}
	if _, err := s.Substitute(context.Background(), dst, c.Root); err != nil {
		t.Fatal(err)
	}
	checkSameObjects(t, src, dst, c.All, "substituted:"+b.URL())
}

func TestSubstituteNotInCache(t *testing.T) {
	src := openStore(t)
	c := buildTestClosure(t, src, "", 0)
	empty := NewFileBackend(t.TempDir())
	b := NewFileBackend(t.TempDir())
	pushT(t, src, b, []store.Path{c.Src}, nil) // only the source
	dst := openStore(t)
	s := &Substituter{Caches: []Backend{empty, b}, AllowUnsigned: true}
	_, err := s.Substitute(context.Background(), dst, c.Venv)
	if !errors.Is(err, ErrNotSubstituted) || !strings.Contains(err.Error(), "not in the cache") {
		t.Fatalf("got %v", err)
	}
}

func mustZstd(t *testing.T, w *bytes.Buffer) *zstd.Encoder {
	t.Helper()
	enc, err := zstd.NewWriter(w)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
