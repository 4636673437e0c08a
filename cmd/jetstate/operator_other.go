//go:build !unix

package main

import (
	"errors"
	"os"
	"os/exec"
)

// execOperator runs the operator as a child with this process's standard
// streams and environment, and exits with its status, where a process
// cannot replace itself. The first interrupt reaches both processes (the
// console sends it to the whole group): the operator stops, this process
// waits for it.
func execOperator(path string, argv []string) error {
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		os.Exit(ee.ExitCode())
	}
	return err
}
