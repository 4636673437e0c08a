package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// operatorBinary is the executable `jetstate operator` runs. The operator
// is a binary of its own (cmd/jetstate-operator) so that this one, which
// every pod runs as its sidecar, links none of Kubernetes' libraries:
// linked, they cost every idle sidecar ~19 MiB of its ~45 (README,
// Performance).
const operatorBinary = "jetstate-operator"

// errNoOperator is returned when jetstate-operator is neither next to this
// executable nor on PATH.
var errNoOperator = errors.New("jetstate operator runs " + operatorBinary + ", which is neither next to jetstate nor on PATH: " +
	"install it (go install github.com/jetstate/jetstate/cmd/" + operatorBinary + "@<version>, or make build for bin/), " +
	"or run the image ghcr.io/jetstate/" + operatorBinary)

// findOperator returns the path of jetstate-operator, as git finds its
// subcommands: the file next to self (this executable), else the first on
// PATH (lookPath).
func findOperator(self string, lookPath func(string) (string, error)) (string, error) {
	if self != "" {
		name := operatorBinary
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		next := filepath.Join(filepath.Dir(self), name)
		if fi, err := os.Stat(next); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return next, nil
		}
	}
	if p, err := lookPath(operatorBinary); err == nil {
		return p, nil
	}
	return "", errNoOperator
}

// runOperator hands `jetstate operator [args]` to jetstate-operator [args]:
// on Unix the process becomes the operator (same pid, signals and exit
// status), elsewhere the operator runs as a child.
func runOperator(args []string) error {
	self, err := os.Executable()
	if err != nil {
		self = ""
	}
	path, err := findOperator(self, exec.LookPath)
	if err != nil {
		return err
	}
	if err := execOperator(path, append([]string{operatorBinary}, args...)); err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	return nil
}
