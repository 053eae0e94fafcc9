package runner

import "syscall"

// sysProcAttr puts ComfyUI in its own process group (so Stop reaches its children) and has the
// kernel kill it if this process dies, so no orphan is left behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
