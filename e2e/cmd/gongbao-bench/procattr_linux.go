package main

import "syscall"

// childAttr makes the kernel kill a child when this process dies, even by
// SIGKILL, so no server outlives an interrupted run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
