package faulttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLiveFindsARealChild starts a real child process and finds it by parent, process group
// and command line; once it has been killed and reaped it is gone from the list.
func TestLiveFindsARealChild(t *testing.T) {
	marker := t.TempDir()
	// A shell that waits for its sleeping child, with the marker in its command line.
	cmd := exec.Command("sh", "-c", "sleep 1000; : "+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh here: %v", err)
	}
	pid := cmd.Process.Pid
	defer syscall.Kill(-pid, syscall.SIGKILL)
	self := os.Getpid()
	byParent := Live(func(p Proc) bool { return p.PPID == self && p.PID == pid })
	if len(byParent) != 1 || byParent[0].Comm != "sh" || byParent[0].PGRP != pid {
		t.Fatalf("child by parent: %v", byParent)
	}
	if m := Mentioning(marker, "sleep"); len(m) != 1 || m[0].PID != pid {
		t.Fatalf("child by command line: %v", m)
	}
	if m := Mentioning(marker, "no-such-word"); len(m) != 0 {
		t.Errorf("every word must match: %v", m)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	cmd.Wait()
	if m := Mentioning(marker); len(m) != 0 {
		t.Errorf("a reaped child is listed: %v", m)
	}
}

// TestReadProcOddComm reads a stat line whose command name holds spaces and parentheses.
func TestReadProcOddComm(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "stat"), []byte("42 (a) b (c)) S 7 9 9 0 -1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte("a\x00--x\x00"), 0o644)
	p, ok := readProc(dir)
	if !ok || p.PID != 42 || p.Comm != "a) b (c)" || p.State != "S" || p.PPID != 7 || p.PGRP != 9 || p.Cmdline != "a --x" {
		t.Fatalf("readProc = %+v, %v", p, ok)
	}
	os.WriteFile(filepath.Join(dir, "stat"), []byte("42 (trunc"), 0o644)
	if _, ok := readProc(dir); ok {
		t.Error("a cut stat line was read")
	}
}

// TestSmallDiskFills mounts a 1 MiB tmpfs (as root) and checks that it is full at 1 MiB and
// takes more after GrowDisk.
func TestSmallDiskFills(t *testing.T) {
	dir := SmallDisk(t, 1<<20)
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2<<20), 0o644)
	if err == nil {
		t.Fatal("2 MiB fit on a 1 MiB disk")
	}
	GrowDisk(t, dir, 4<<20)
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatalf("after GrowDisk: %v", err)
	}
}
