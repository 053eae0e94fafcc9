//go:build !linux

package runner

import "syscall"

// sysProcAttr puts ComfyUI in its own process group, so Stop reaches its children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
