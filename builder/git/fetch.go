package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	gogit "github.com/go-git/go-git/v5"
)

// ErrNoSpace is a fetch that failed because the disk holding the mirror cache is full.
var ErrNoSpace = errors.New("no space left on device")

// killGrace is how long a git child gets, after its context ends and its process group was
// sent SIGKILL, for its output pipes to close before Wait gives up on them.
const killGrace = 5 * time.Second

// gitEnv is the hermetic environment of the git commands run on mirrors: no system or user
// config, no replace objects, no prompts, the C locale. "git" is found on this process's PATH.
var gitEnv = []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_NO_REPLACE_OBJECTS=1",
	"GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}

// gitCommand returns a git command on the mirror gitDir that ends with ctx: it runs in its
// own process group, and when ctx ends the whole group (git and the git-upload-pack,
// index-pack it started) is killed with SIGKILL, so nothing is left waiting on a pipe.
func gitCommand(ctx context.Context, gitDir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + gitDir}, args...)...)
	cmd.Env = gitEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = killGrace
	return cmd
}

// fetchCLI fetches refspecs from the local remote u into the mirror gitDir with the git
// command. go-git's file transport runs git-upload-pack as a child it waits for without
// reading its output once writing the pack failed (a full disk), so it never returns and no
// signal ends it; git itself ends on a write error, and gitCommand ends it with ctx.
func fetchCLI(ctx context.Context, gitDir, u string, refspecs ...string) error {
	args := []string{"-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "fetch.writeCommitGraph=false",
		"-c", "core.fsync=objects,reference", "fetch", "--quiet", "--no-tags", "--force", "--no-write-fetch-head",
		"--no-recurse-submodules", "--", u}
	cmd := gitCommand(ctx, gitDir, append(args, refspecs...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 16 << 10}
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := strings.TrimSpace(stderr.String())
	switch {
	case strings.Contains(msg, "No space left on device"):
		return fmt.Errorf("%w writing the mirror %s: free space on that disk and build again (the partial fetch is discarded)", ErrNoSpace, gitDir)
	case strings.Contains(msg, "not appear to be a git repository"):
		return fmt.Errorf("%w: %s", ErrNotRepository, lastLine(msg))
	case strings.Contains(msg, "not our ref") || strings.Contains(msg, "couldn't find remote ref"):
		return fmt.Errorf("%w: %s", ErrUnknownRef, lastLine(msg))
	case remoteCorrupt(msg):
		return corruptError("git fetch: " + firstCorruptLine(msg))
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%w: git fetch: %s", ErrUnreachable, lastLine(msg))
}

// goGitFetch runs a go-git fetch and returns when it ends or ctx does, whichever is first.
// For https and ssh go-git ends the transfer itself when ctx ends; the wait on ctx is a
// second guard so that a transport that blocks past its context cannot hold the build.
func goGitFetch(ctx context.Context, rem *gogit.Remote, o *gogit.FetchOptions) error {
	done := make(chan error, 1)
	go func() { done <- rem.FetchContext(ctx, o) }()
	select {
	case err := <-done:
		if err != nil && errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("%w: %v", ErrNoSpace, err)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lastLine returns the first "fatal:" or "error:" line of git's stderr, else its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "fatal: ") || strings.HasPrefix(l, "error: ") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// limitedBuffer keeps the first max bytes written to it and drops the rest, so that a chatty
// child cannot grow this process's memory.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}
