package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoKubernetesDependencies fails if the jetstate binary, which every
// pod runs as its sidecar, links a Kubernetes library or jetstate's
// operator: they belong in jetstate-operator.
func TestNoKubernetesDependencies(t *testing.T) {
	goTool := goCommand(t)
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", "github.com/jetstate/jetstate/cmd/jetstate").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	seen := map[string]bool{}
	for _, dep := range deps {
		seen[dep] = true
	}
	// The list is the binary's: a check of an empty or wrong one would pass.
	for _, want := range []string{"github.com/jetstate/jetstate/cmd/jetstate", "github.com/jetstate/jetstate/proxy", "github.com/nats-io/nats.go"} {
		if !seen[want] {
			t.Fatalf("go list -deps lacks %s: %q", want, deps)
		}
	}
	var bad []string
	for _, dep := range deps {
		if forbiddenDependency(dep) {
			bad = append(bad, dep)
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/jetstate depends on %d packages that belong to the operator (`go mod why <package>` shows through what), such as:\n%s",
			len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}

func forbiddenDependency(pkg string) bool {
	for _, prefix := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/jetstate/jetstate/operator/", "github.com/jetstate/jetstate/cmd/jetstate-operator"} {
		if strings.HasPrefix(pkg, prefix) {
			return true
		}
	}
	return false
}

func TestForbiddenDependency(t *testing.T) {
	for pkg, want := range map[string]bool{
		"k8s.io/client-go/rest":                              true,
		"k8s.io/apimachinery/pkg/runtime":                    true,
		"sigs.k8s.io/controller-runtime":                     true,
		"sigs.k8s.io/yaml":                                   true,
		"github.com/jetstate/jetstate/operator/controller":   true,
		"github.com/jetstate/jetstate/operator/autoscaler":   true,
		"github.com/jetstate/jetstate/cmd/jetstate-operator": true,
		"github.com/jetstate/jetstate/proxy":                 false,
		"github.com/jetstate/jetstate/proxy/load":            false,
		"github.com/jetstate/jetstate/cmd/jetstate":          false,
		"github.com/nats-io/nats.go":                         false,
		"golang.org/x/net/http2":                             false,
	} {
		if got := forbiddenDependency(pkg); got != want {
			t.Errorf("forbiddenDependency(%q) = %v, want %v", pkg, got, want)
		}
	}
}

func TestFindOperator(t *testing.T) {
	self, onPath := t.TempDir(), t.TempDir()
	exe := func(dir string) string {
		p := filepath.Join(dir, operatorBinary)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil || os.Chmod(p, 0o755) != nil {
			t.Fatal(err)
		}
		return p
	}
	pathHas := func(p string) func(string) (string, error) {
		return func(name string) (string, error) {
			if name != operatorBinary {
				t.Errorf("looked up %q on PATH", name)
			}
			if p == "" {
				return "", exec.ErrNotFound
			}
			return p, nil
		}
	}
	fromPath := exe(onPath)
	jetstate := filepath.Join(self, "jetstate")

	if got, err := findOperator(jetstate, pathHas(fromPath)); err != nil || got != fromPath {
		t.Errorf("none next to jetstate: %q, %v; want %q from PATH", got, err, fromPath)
	}
	if got, err := findOperator(jetstate, pathHas("")); !errors.Is(err, errNoOperator) {
		t.Errorf("none anywhere: %q, %v; want errNoOperator", got, err)
	}
	// A file there that cannot be run is not it.
	if err := os.WriteFile(filepath.Join(self, operatorBinary), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := findOperator(jetstate, pathHas(fromPath)); err != nil || got != fromPath {
		t.Errorf("a file that cannot be run next to jetstate: %q, %v; want %q from PATH", got, err, fromPath)
	}
	next := exe(self)
	if got, err := findOperator(jetstate, pathHas(fromPath)); err != nil || got != next {
		t.Errorf("both: %q, %v; want %q next to jetstate", got, err, next)
	}
	if got, err := findOperator("", pathHas(fromPath)); err != nil || got != fromPath {
		t.Errorf("own path unknown: %q, %v; want %q from PATH", got, err, fromPath)
	}
}

// TestOperatorHandOff builds both binaries and runs `jetstate operator` as
// a user would: the arguments reach jetstate-operator (its usage, its
// refusal of a bad flag with its exit status), found next to jetstate or on
// PATH; without it, the error says what to install.
func TestOperatorHandOff(t *testing.T) {
	if testing.Short() {
		t.Skip("builds jetstate and jetstate-operator")
	}
	goTool := goCommand(t)
	both, alone := t.TempDir(), t.TempDir()
	build := exec.CommandContext(t.Context(), goTool, "build", "-o", both+string(filepath.Separator),
		"github.com/jetstate/jetstate/cmd/jetstate", "github.com/jetstate/jetstate/cmd/jetstate-operator")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	jetstate, operator := filepath.Join(both, "jetstate"), filepath.Join(both, operatorBinary)
	lone := filepath.Join(alone, "jetstate")
	if err := os.Link(jetstate, lone); err != nil {
		data, err := os.ReadFile(jetstate)
		if err == nil {
			err = os.WriteFile(lone, data, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	emptyPath := t.TempDir()

	run := func(bin, path string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), "PATH="+path)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s %q: %v", bin, args, err)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}

	for _, tc := range []struct{ name, bin, path string }{
		{"next to jetstate", jetstate, emptyPath},
		{"on PATH", lone, filepath.Dir(operator)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, _ := run(tc.bin, tc.path, "operator", "-h")
			if !strings.Contains(out, "Usage: jetstate-operator [flags]") || !strings.Contains(out, "-leader-elect") {
				t.Errorf("jetstate operator -h printed %q; want jetstate-operator's usage", out)
			}
			_, errOut, code := run(tc.bin, tc.path, "operator", "-autoscaler-tick", "-1s", "-sidecar-pull-policy", "Sometimes")
			if code != 1 || !strings.Contains(errOut, "jetstate-operator: -autoscaler-tick must not be negative") ||
				!strings.Contains(errOut, "sidecar pull policy must be") {
				t.Errorf("jetstate operator with bad flags: exit %d, stderr %q; want jetstate-operator's refusal of both, exit 1", code, errOut)
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		_, errOut, code := run(lone, emptyPath, "operator", "-h")
		if code != 1 || !strings.Contains(errOut, "neither next to jetstate nor on PATH") || !strings.Contains(errOut, "ghcr.io/jetstate/jetstate-operator") {
			t.Errorf("exit %d, stderr %q; want exit 1 and what to install", code, errOut)
		}
	})
}

// goCommand is the go command that runs the tests.
func goCommand(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to check the binary: %v", err)
	}
	return p
}
