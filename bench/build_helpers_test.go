package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildCPUTime is the CPU time (user + system) used so far by this process and its waited-for
// children (git): less sensitive than wall time to other work on a shared machine.
func buildCPUTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// gitRun runs git in dir with a fixed identity and returns its trimmed output.
func gitRun(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.invalid",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// makeSourceRepo creates a git repository at dir with n files of about size bytes spread
// over nested directories (every tenth one executable, a few symlinks), committed in two
// commits so the history has some depth, and returns the head commit.
func makeSourceRepo(tb testing.TB, dir string, n, size int) string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	gitRun(tb, dir, "init", "-q", "-b", "main")
	line := strings.Repeat("x", 63) + "\n"
	write := func(from, to int, salt string) {
		for i := from; i < to; i++ {
			p := filepath.Join(dir, fmt.Sprintf("pkg%02d", i%37), fmt.Sprintf("sub%d", i%5), fmt.Sprintf("file%05d.py", i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				tb.Fatal(err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "# file %d %s\n", i, salt)
			for b.Len() < size {
				b.WriteString(line)
			}
			perm := os.FileMode(0o644)
			if i%10 == 0 {
				perm = 0o755
			}
			if err := os.WriteFile(p, []byte(b.String()), perm); err != nil {
				tb.Fatal(err)
			}
		}
	}
	write(0, n, "v1")
	for i := 0; i < 3; i++ {
		os.Symlink(fmt.Sprintf("pkg%02d", i), filepath.Join(dir, fmt.Sprintf("link%d", i)))
	}
	gitRun(tb, dir, "add", "-A")
	gitRun(tb, dir, "commit", "-q", "-m", "v1")
	write(0, n/10, "v2")
	gitRun(tb, dir, "add", "-A")
	gitRun(tb, dir, "commit", "-q", "-m", "v2")
	return gitRun(tb, dir, "rev-parse", "HEAD")
}
