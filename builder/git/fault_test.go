package git

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
)

// hangBound is how long a fetch that should fail at once may take before the test calls it
// hung. It is generous: the failures it guards against never end at all.
const hangBound = 2 * time.Minute

// smallDisk mounts a tmpfs of size bytes and returns its directory. It needs root (to mount);
// without it the test is skipped with the reason.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a real full disk); run the tests as root to include it")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the full-disk test needs one", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		// Lazy: go-git keeps pack files of opened mirrors open until the process ends.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// growDisk gives the tmpfs at dir a new size, as freeing space would.
func growDisk(t *testing.T, dir string, size int64) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
}

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
	disk := smallDisk(t, 2<<20)
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
	growDisk(t, disk, 32<<20)
	if err := ensureEnds(t, context.Background(), m, repo, commit); err != nil {
		t.Fatalf("fetch after freeing space: %v", err)
	}
}

// assertNoGitChildren fails if a git process started by this test process is still running.
func assertNoGitChildren(t *testing.T) {
	t.Helper()
	self := fmt.Sprint(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		comm := s[strings.IndexByte(s, '(')+1 : i]
		if len(f) > 1 && f[1] == self && strings.HasPrefix(comm, "git") && f[0] != "Z" {
			t.Errorf("git child still running: %s", strings.TrimSpace(s[:i+1]))
		}
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
	for _, p := range liveProcesses(func(pgrp, state string) bool { return pgrp == fmt.Sprint(pgid) }) {
		t.Errorf("process group %d still has a live member after cancel: %s", pgid, p)
	}
}

// liveProcesses lists the processes (not zombies) that match, given their process group and
// state from /proc/PID/stat.
func liveProcesses(match func(pgrp, state string) bool) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid pgrp ...
		if len(f) > 2 && f[0] != "Z" && f[0] != "X" && match(f[2], f[0]) {
			out = append(out, strings.TrimSpace(s[:i+1]))
		}
	}
	return out
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

// gitProcessesFor lists the live processes whose command line mentions dir.
func gitProcessesFor(dir string) []string {
	var out []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) || !strings.Contains(string(b), "git") {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X') {
			continue
		}
		out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
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
			for len(gitProcessesFor(repo)) == 0 {
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
			if left := gitProcessesFor(repo); len(left) > 0 {
				t.Errorf("git processes left: %q", left)
			}
		})
	}
}
