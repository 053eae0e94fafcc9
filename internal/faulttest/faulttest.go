// Package faulttest holds what the fault tests share: a real full disk (a small tmpfs) and
// the list of live processes (from /proc), to check that nothing a test started is left
// running. Only tests import it.
//
// Words:
//
//   - SmallDisk: a tmpfs of a given size mounted on a test's temporary directory; mounting
//     needs root, so without it (or where mount fails) the test is skipped with the reason.
//   - Proc: one process as /proc tells it; live means not a zombie (state Z) and not dead
//     (state X).
package faulttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes on a fresh temporary directory and returns it. It is
// unmounted lazily when the test ends (go-git keeps pack files of opened mirrors open until
// the process ends). Without root, or where a tmpfs cannot be mounted, the test is skipped.
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a real full disk); run the tests as root to include it")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the full-disk test needs one", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// GrowDisk gives the SmallDisk at dir a new size, as freeing space would.
func GrowDisk(t testing.TB, dir string, size int64) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
}

// Proc is one process as /proc/PID/stat and /proc/PID/cmdline tell it.
type Proc struct {
	PID   int
	Comm  string // the command name, in parentheses in stat
	State string // R, S, D, Z, X, ...
	PPID  int
	PGRP  int
	// Cmdline is the command line with its arguments separated by spaces.
	Cmdline string
}

// String names the process for a test failure.
func (p Proc) String() string {
	return fmt.Sprintf("%d (%s) %s: %s", p.PID, p.Comm, p.State, p.Cmdline)
}

// Live lists the live processes (not zombies, not dead) for which match is true. A process
// that ends while it is read is left out.
func Live(match func(Proc) bool) []Proc {
	var out []Proc
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		p, ok := readProc(filepath.Dir(stat))
		if ok && p.State != "Z" && p.State != "X" && match(p) {
			out = append(out, p)
		}
	}
	return out
}

// Mentioning lists the live processes whose command line contains every one of words.
func Mentioning(words ...string) []Proc {
	return Live(func(p Proc) bool {
		for _, w := range words {
			if !strings.Contains(p.Cmdline, w) {
				return false
			}
		}
		return true
	})
}

// readProc reads /proc/PID (dir): "pid (comm) state ppid pgrp ..." and the NUL-separated
// command line. comm may hold spaces and parentheses, so it ends at the last ')'.
func readProc(dir string) (Proc, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Proc{}, false
	}
	f := strings.Fields(s[end+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return Proc{}, false
	}
	p := Proc{Comm: s[open+1 : end], State: f[0]}
	p.PID, _ = strconv.Atoi(strings.TrimSpace(s[:open]))
	p.PPID, _ = strconv.Atoi(f[1])
	p.PGRP, _ = strconv.Atoi(f[2])
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	return p, true
}
