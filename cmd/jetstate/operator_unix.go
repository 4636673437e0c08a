//go:build unix

package main

import (
	"os"
	"syscall"
)

// execOperator replaces this process with the operator: it keeps the pid
// (PID 1 in a container stays the one that gets SIGTERM), and the operator
// sets its own signal handling and exit status. It returns only on failure.
func execOperator(path string, argv []string) error {
	return syscall.Exec(path, argv, os.Environ())
}
