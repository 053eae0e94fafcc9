package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/faulttest"
)

// The child mode of the test binary: write generation after generation of a file whose every
// byte is the generation number, until killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("ATOMICFILE_TEST_WRITER"); path != "" {
		for gen := 1; ; gen++ {
			if err := WriteFile(path, content(gen), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
	}
	os.Exit(m.Run())
}

// content is 256 KiB of one byte value, so a torn file (a mix of two generations, or a
// short write) is recognised by its bytes and its size.
func content(gen int) []byte { return bytes.Repeat([]byte{byte(gen%250 + 1)}, 256<<10) }

func wholeGeneration(b []byte) bool {
	return len(b) == 256<<10 && bytes.Count(b, b[:1]) == len(b)
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			tmp = append(tmp, e.Name())
		}
	}
	return tmp
}

func TestWriteFileReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lock.json")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new" {
		t.Fatalf("content %q, %v", b, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (the mode given, not the umask's)", fi.Mode().Perm())
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

func TestWriteFileErrorsLeaveOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.json")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The target is a directory now: the rename fails, the temp file must go.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(sub, []byte("new"), 0o644)
	if err == nil || !strings.Contains(err.Error(), sub) {
		t.Errorf("writing over a non-empty directory: %v (want an error naming the path)", err)
	}
	// A missing directory: an error naming the path.
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temp files left after failures: %v", tmp)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("old content changed to %q", b)
	}
}

// A full disk: the write fails with ENOSPC, the old content stays whole and no temp file is
// left to fill the disk further. It needs a small filesystem of its own, so it runs as root.
func TestWriteFileFullDisk(t *testing.T) {
	dir := faulttest.SmallDisk(t, 1<<20)
	path := filepath.Join(dir, "lock.json")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, make([]byte, 2<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("2 MiB into a 1 MiB filesystem: %v, want ENOSPC", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("old content changed to %d bytes", len(b))
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temp files left on a full disk: %v", tmp)
	}
	// Space is back: the next write works.
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Errorf("after the failure: %v", err)
	}
}

// A writer killed with SIGKILL at random moments leaves the file whole: one generation's
// bytes, never a mix or a short file.
func TestWriteFileSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := WriteFile(path, content(0), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	for i := 0; i < 8; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ATOMICFILE_TEST_WRITER="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+rng.IntN(60)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("writer %d ended by itself (%v): %s", i, err, stderr.String())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("after kill %d: %v", i, err)
		}
		if !wholeGeneration(b) {
			t.Fatalf("after kill %d: a torn file of %d bytes (first byte %d)", i, len(b), b[0])
		}
	}
	// The killed writers leave temp files behind (a crash cannot clean up); they are the
	// caller's debris to collect, never the file itself.
	t.Logf("temp files left by 8 kills: %d", len(leftovers(t, dir)))
}
