package git

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/faulttest"
)

// hangBound is how long a fetch that should fail at once may take before the test calls it
// hung. It is generous: the failures it guards against never end at all.
const hangBound = 2 * time.Minute

// bigRepo makes a repository of one commit holding size bytes of incompressible data.
func bigRepo(t *testing.T, size int) (dir, commit string) {
	dir = filepath.Join(t.TempDir(), "big")
	os.MkdirAll(dir, 0o755)
	gitCmd(t, dir, "init", "-q", "-b", "main")
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "node.py"), []byte("X = 1\n"), 0o644)
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", "big")
	return dir, gitCmd(t, dir, "rev-parse", "HEAD")
}

// httpRemote serves the repositories under root over git's smart HTTP protocol (the real
// git http-backend as CGI) on loopback, and returns the base URL.
func httpRemote(t *testing.T, root string) string {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("no git: %v", err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// ensureEnds runs Ensure and fails the test if it has not returned within hangBound.
func ensureEnds(t *testing.T, ctx context.Context, m *Mirrors, u, commit string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := m.Ensure(ctx, u, commit)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(hangBound):
		t.Fatalf("fetching %s hung (no return within %v)", u, hangBound)
		return nil
	}
}

// TestFetchOnFullDiskEnds fetches a 4 MB repository into a mirror cache on a 2 MB disk: the
// fetch must end with ErrNoSpace (it used to wait on git-upload-pack for ever), leave no
// child behind, and once there is space the next fetch must succeed.
func TestFetchOnFullDiskEnds(t *testing.T) {
	disk := faulttest.SmallDisk(t, 2<<20)
	repo, commit := bigRepo(t, 4<<20)
	httpBase := httpRemote(t, filepath.Dir(repo))
	for _, tc := range []struct{ name, url string }{
		{"path", repo},
		{"file-url", "file://" + repo},
		{"http", httpBase + "/big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMirrors(filepath.Join(disk, tc.name), Credentials{})
			err := ensureEnds(t, context.Background(), m, tc.url, commit)
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("want ErrNoSpace, got %v", err)
			}
			if !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("message does not say the disk is full: %v", err)
			}
			assertNoGitChildren(t)
			os.RemoveAll(filepath.Join(disk, tc.name))
		})
	}
	// With space again, the same mirror cache works: nothing left behind blocks it.
	m := NewMirrors(filepath.Join(disk, "again"), Credentials{})
	if err := ensureEnds(t, context.Background(), m, repo, commit); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("want ErrNoSpace, got %v", err)
	}
	faulttest.GrowDisk(t, disk, 32<<20)
	if err := ensureEnds(t, context.Background(), m, repo, commit); err != nil {
		t.Fatalf("fetch after freeing space: %v", err)
	}
}

// assertNoGitChildren fails if a git process started by this test process is still running.
func assertNoGitChildren(t *testing.T) {
	t.Helper()
	self := os.Getpid()
	for _, p := range faulttest.Live(func(p faulttest.Proc) bool { return p.PPID == self && strings.HasPrefix(p.Comm, "git") }) {
		t.Errorf("git child still running: %s", p)
	}
}

// TestFetchCancelEnds cancels a fetch from a remote that never answers: Ensure must return
// context.Canceled.
func TestFetchCancelEnds(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	m := NewMirrors(t.TempDir(), Credentials{})
	err := ensureEnds(t, ctx, m, srv.URL+"/stalls.git", strings.Repeat("a", 40))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

// TestGitCommandKilledWithContext checks that ending ctx kills the whole process group of a
// git command, not only its first process.
func TestGitCommandKilledWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	// A git alias running a shell that starts a grandchild sleeping for ever.
	cmd := gitCommand(ctx, dir, "-c", "alias.hang=!sleep 1000 & echo started; wait", "hang")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(hangBound):
		t.Fatal("git command did not end with its context")
	}
	// SIGKILL is delivered to every member before kill returns; a member that is not yet a
	// zombie (reaped by init) is in state Z or X at once, never running again.
	for _, p := range faulttest.Live(func(p faulttest.Proc) bool { return p.PGRP == pgid }) {
		t.Errorf("process group %d still has a live member after cancel: %s", pgid, p)
	}
}

// stalledRepo makes a repository whose git-upload-pack never answers: its alternates file
// is a FIFO nobody writes, so opening it blocks for ever.
func stalledRepo(t *testing.T) (dir, commit string) {
	dir, commit = smallRepo(t)
	if err := syscall.Mkfifo(filepath.Join(dir, ".git", "objects", "info", "alternates"), 0o644); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	return dir, commit
}

// TestStalledLocalRemoteCancel lists refs of and fetches from a local remote whose
// git-upload-pack hangs: cancelling must end both and leave no git process behind.
func TestStalledLocalRemoteCancel(t *testing.T) {
	repo, commit := stalledRepo(t)
	m := NewMirrors(t.TempDir(), Credentials{})
	for _, op := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"ls-remote", func(ctx context.Context) error { _, err := m.LsRemote(ctx, repo); return err }},
		{"fetch", func(ctx context.Context) error { _, err := m.Ensure(ctx, repo, commit); return err }},
	} {
		t.Run(op.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- op.run(ctx) }()
			// Cancel once git is running against the remote (and stuck there).
			deadline := time.Now().Add(hangBound)
			for len(faulttest.Mentioning(repo, "git")) == 0 {
				select {
				case err := <-done:
					t.Fatalf("ended before it was cancelled: %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatal("git never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("want context.Canceled, got %v", err)
				}
			case <-time.After(hangBound):
				t.Fatal("did not end after cancel")
			}
			if left := faulttest.Mentioning(repo, "git"); len(left) > 0 {
				t.Errorf("git processes left: %q", left)
			}
		})
	}
}
