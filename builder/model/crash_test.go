package model

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHelperDownloadProcess is the child of TestResumeAfterKill: it downloads
// $MODEL_CHILD_URL with the partial directory $MODEL_CHILD_PARTIAL until it is killed.
func TestHelperDownloadProcess(t *testing.T) {
	url := os.Getenv("MODEL_CHILD_URL")
	if url == "" {
		t.Skip("only run as the child of TestResumeAfterKill")
	}
	opts := Options{PartialDir: os.Getenv("MODEL_CHILD_PARTIAL"), CheckpointEvery: 256 << 10}
	if os.Getenv("MODEL_CHILD_RANGED") != "" {
		opts = rangedOpts(opts)
	}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := ParseSource(url, "")
	f.Fetch(context.Background(), src, Want{}, filepath.Join(t.TempDir(), "never"), nil)
}

// killChildAfterCheckpoint runs TestHelperDownloadProcess as a child process downloading url
// (in ranges when ranged) and kills it with SIGKILL once its checkpoint has reached minOffset
// (waiting at most 30 s), returning that checkpoint.
func killChildAfterCheckpoint(t *testing.T, url, partial string, minOffset int64, ranged bool) checkpoint {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestHelperDownloadProcess$", "-test.count=1")
	child.Env = append(os.Environ(), "MODEL_CHILD_URL="+url, "MODEL_CHILD_PARTIAL="+partial)
	if ranged {
		child.Env = append(child.Env, "MODEL_CHILD_RANGED=1")
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		ck    checkpoint
		state string
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		states, _ := filepath.Glob(filepath.Join(partial, "*.state"))
		if len(states) == 1 {
			state = states[0]
			if b, err := os.ReadFile(state); err == nil && json.Unmarshal(b, &ck) == nil && ck.Offset >= minOffset {
				break
			}
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			child.Wait()
			t.Fatal("the child never checkpointed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	// The child may have checkpointed again between the read above and the kill: the resume
	// starts from the last checkpoint on disk (written atomically), so return that one.
	b, err := os.ReadFile(state)
	if err != nil || json.Unmarshal(b, &ck) != nil {
		t.Fatalf("reading the checkpoint after the kill: %v", err)
	}
	return ck
}

// TestResumeAfterKill kills a downloading process with SIGKILL once it has checkpointed, then
// downloads again in this process: the dead process's lock is broken, the download resumes
// from the checkpoint with a Range request, and the result is right.
func TestResumeAfterKill(t *testing.T) {
	data := testData(6 << 20)
	const sentBeforeStall = 3 << 20
	stall := make(chan struct{})
	defer close(stall)
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 0 {
			return false
		}
		// First request (the child): send 3 MiB, then hang until the test ends.
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusOK)
		w.Write(data[:sentBeforeStall])
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		return true
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	url := srv.URL + "/killed.safetensors"

	ck := killChildAfterCheckpoint(t, url, partial, 2<<20, false)
	if locks, _ := filepath.Glob(filepath.Join(partial, "*.lock")); len(locks) != 1 {
		t.Fatalf("the killed child should have left its lock, found %v", locks)
	}

	f, warn := newTestFetcher(t, Options{PartialDir: partial})
	dst := filepath.Join(t.TempDir(), "killed.safetensors")
	res, err := f.Fetch(context.Background(), mustSource(t, url), Want{}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if res.Checksum != sha256Of(data) {
		t.Fatalf("checksum %s", res.Checksum)
	}
	reqs := fs.requests()
	last := reqs[len(reqs)-1]
	off, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(last.Range, "bytes="), "-"), 10, 64)
	if off < ck.Offset || off > sentBeforeStall {
		t.Fatalf("resumed with Range %q, want from the checkpoint (>= %d, <= %d)", last.Range, ck.Offset, sentBeforeStall)
	}
	if !strings.Contains(warn.String(), "resuming the download at byte") {
		t.Fatalf("no resume warning: %s", warn)
	}
	emptyDir(t, partial)
}

// TestResumeRangedAfterKill kills a process downloading in parallel ranges with SIGKILL once
// it has checkpointed; the download in this process resumes from the checkpoint, again in
// parallel ranges, asking for nothing before the checkpoint, and the file, its checksum and
// its NAR hash are right.
func TestResumeRangedAfterKill(t *testing.T) {
	data := testData(4<<20 + 999)
	const stallFrom = 2 << 20
	stall := make(chan struct{})
	defer close(stall)
	var killed atomic.Bool
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if killed.Load() {
			return false
		}
		// While the child runs, every piece from stallFrom on hangs until the test ends.
		if a, _, ok := boundedRange(r); ok && a >= stallFrom {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	url := srv.URL + "/ranged.safetensors"

	ck := killChildAfterCheckpoint(t, url, partial, stallFrom-(256<<10), true)
	killed.Store(true)
	if pieceRequests(fs.requests()) == 0 {
		t.Fatal("the child did not download in ranges")
	}
	before := len(fs.requests())

	f, warn := newTestFetcher(t, rangedOpts(Options{PartialDir: partial}))
	dst := filepath.Join(t.TempDir(), "ranged.safetensors")
	res, err := f.Fetch(context.Background(), mustSource(t, url), Want{}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	wantNar, _ := narOf(t, data)
	if res.Checksum != sha256Of(data) || res.NarHash != wantNar {
		t.Fatalf("result %+v", res)
	}
	after := fs.requests()[before:]
	// Requests of the killed child may still reach the server; ours start with the probe
	// from the checkpoint.
	probe := -1
	for i, r := range after {
		if r.Range == fmt.Sprintf("bytes=%d-", ck.Offset) {
			probe = i
			break
		}
	}
	if probe < 0 {
		t.Fatalf("no probe from the checkpoint %d: %+v", ck.Offset, after)
	}
	for _, r := range after[probe:] {
		a, _, _ := strings.Cut(strings.TrimPrefix(r.Range, "bytes="), "-")
		if off, err := strconv.ParseInt(a, 10, 64); err != nil || off < ck.Offset {
			t.Fatalf("asked for %q after resuming from %d", r.Range, ck.Offset)
		}
	}
	if pieceRequests(after[probe:]) == 0 {
		t.Fatalf("the resumed download did not use ranges: %+v", after[probe:])
	}
	if !strings.Contains(warn.String(), "resuming the download at byte") {
		t.Fatalf("no resume warning: %s", warn)
	}
	emptyDir(t, partial)
}
