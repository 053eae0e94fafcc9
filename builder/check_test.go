package builder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

func TestCheckDeterministic(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	opts := BuildOptions{Root: root, Spec: f.spec("demo"), Jobs: 2}
	// Check builds the version first when it is not built.
	rep, err := Check(ctx, CheckOptions{BuildOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("check of a deterministic version failed: %+v", rep)
	}
	kinds := map[string]int{}
	for _, o := range rep.Objects {
		kinds[o.Kind]++
		if o.StoreNarHash == "" || o.RebuiltNarHash != o.StoreNarHash {
			t.Errorf("%s: store %s rebuilt %s", o.Path, o.StoreNarHash, o.RebuiltNarHash)
		}
		if o.Kind == drv.KindGit && o.LockNarHash != o.StoreNarHash {
			t.Errorf("%s: lock NAR hash %q, store %q", o.Path, o.LockNarHash, o.StoreNarHash)
		}
		if o.Source != "built" {
			t.Errorf("%s: source %q, want built", o.Path, o.Source)
		}
	}
	if kinds[drv.KindGit] != 3 || kinds[drv.KindRoot] != 1 {
		t.Errorf("rebuilt kinds %v, want 3 git sources and a root", kinds)
	}
	if rep.Verify == nil || rep.Verify.Checked == 0 || len(rep.Verify.Problems) != 0 {
		t.Errorf("verify of existing objects: %+v", rep.Verify)
	}
	// The scratch store is gone, and nothing else changed.
	entries, _ := os.ReadDir(filepath.Join(root, "cache", "runpod-comfy", "check"))
	if len(entries) != 0 {
		t.Errorf("scratch stores left behind: %v", entries)
	}
}

// stampRoot makes the root builder non-deterministic: it appends the build time to
// extra_model_paths.yaml, as a careless build step would.
func stampRoot(kind string, b drv.Builder) drv.Builder {
	if kind != drv.KindRoot {
		return b
	}
	return drv.BuilderFunc(func(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
		if err := b.Build(ctx, bc, d, out); err != nil {
			return err
		}
		fh, err := os.OpenFile(filepath.Join(out, "extra_model_paths.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer fh.Close()
		_, err = fh.WriteString("# built at " + time.Now().Format(time.RFC3339Nano) + "\n")
		return err
	})
}

func TestCheckNamesNonDeterministicFile(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	opts := BuildOptions{Root: root, Spec: f.spec("demo"), Jobs: 2}
	if _, err := Build(ctx, opts); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(ctx, CheckOptions{BuildOptions: opts, WrapBuilder: stampRoot, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Differing() != 1 {
		t.Fatalf("check passed or found %d differences; want exactly the root: %+v", rep.Differing(), rep.Objects)
	}
	var root1 *CheckedObject
	for i, o := range rep.Objects {
		if !o.Match {
			root1 = &rep.Objects[i]
		}
	}
	if root1.Kind != drv.KindRoot || len(root1.Files) != 1 {
		t.Fatalf("differing object %+v, want the root with one file", root1)
	}
	fd := root1.Files[0]
	if fd.Path != "extra_model_paths.yaml" || fd.Change != "content" || fd.RebuiltSize <= fd.StoreSize || fd.StoreSHA256 == fd.RebuiltSHA256 {
		t.Errorf("file difference %+v", fd)
	}
	if len(fd.Lines) != 1 || fd.Lines[0].Store != "" || !strings.HasPrefix(fd.Lines[0].Rebuilt, "# built at ") {
		t.Errorf("line differences %+v, want the appended stamp line", fd.Lines)
	}
	// --keep leaves the scratch store, with the rebuilt root in it.
	if rep.Scratch == "" {
		t.Fatal("no scratch store kept")
	}
	if _, err := os.Stat(filepath.Join(rep.Scratch, "store", root1.Path, "extra_model_paths.yaml")); err != nil {
		t.Errorf("kept scratch store lacks the rebuilt root: %v", err)
	}
	removeTree(rep.Scratch)
}

// TestCheckWithModel: models are fixed by content, verified in the store and hard-linked into
// the scratch store, never fetched again: the source may even be gone.
func TestCheckWithModel(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	src := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := os.WriteFile(src, []byte("not really weights\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := f.spec("demo")
	spec.Models = []specs.Model{{Source: src, TargetSubdir: "checkpoints"}}
	ctx := context.Background()
	opts := BuildOptions{Root: root, Spec: spec, Jobs: 2}
	if _, err := Build(ctx, opts); err != nil {
		t.Fatal(err)
	}
	os.Remove(src)
	rep, err := Check(ctx, CheckOptions{BuildOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("check failed: %+v", rep)
	}
	for _, o := range rep.Objects {
		if o.Kind == drv.KindModel {
			t.Errorf("model %s was rebuilt; it is fixed by content", o.Path)
		}
	}
	if rep.Verify.Checked != len(rep.Objects)+1 {
		t.Errorf("verify checked %d objects, want the %d rebuilt ones and the model", rep.Verify.Checked, len(rep.Objects))
	}
}
