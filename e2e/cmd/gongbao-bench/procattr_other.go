//go:build !linux

package main

import "syscall"

// childAttr has no parent-death signal outside Linux; children are still
// stopped by the supervisor on every normal or interrupted exit.
func childAttr() *syscall.SysProcAttr { return nil }
