package shoppingcart_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// process is one real binary the test runs, kills and restarts, always
// with the same arguments and environment. Its output (all runs) goes to
// one log file.
type process struct {
	t    testing.TB
	name string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // how the current run exited
	kill bool          // the test killed the current run
}

func newProcess(t testing.TB, name string, args, env []string) *process {
	p := &process{t: t, name: name, args: args, env: env, log: filepath.Join(t.TempDir(), filepath.Base(args[0])+".log")}
	t.Cleanup(func() {
		p.kill9()
		p.checkLog()
	})
	return p
}

// start starts a run. A run that ends without being killed by the test
// fails the test.
func (p *process) start() {
	p.t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(out, "--- %s start %s\n", p.name, time.Now().Format(time.StampMilli))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.kill = cmd, done, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		out.Close()
		p.mu.Lock()
		p.err = err
		killed := p.kill
		p.mu.Unlock()
		close(done)
		if !killed {
			p.t.Errorf("%s exited by itself: %v; its log:\n%s", p.name, err, p.tail())
		}
	}()
}

// kill9 kills the current run with SIGKILL and waits until it is gone.
func (p *process) kill9() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return
	}
	p.kill = true
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// tail is the end of the log.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// checkLog fails the test if a run of a race-enabled binary reported a
// data race.
func (p *process) checkLog() {
	b, _ := os.ReadFile(p.log)
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		end := min(len(b), i+6000)
		p.t.Errorf("%s: data race:\n%s", p.name, b[i:end])
	}
}

// buildBinary builds the main package pkg into dir, with the race detector
// when the test has it.
func buildBinary(t testing.TB, dir, pkg string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build %s: %v", pkg, err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(t.Context(), goTool, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// freePorts returns n distinct loopback ports nothing listens on now.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// waitFor polls ok until it holds; a minute is a failsafe.
func waitFor(ctx context.Context, t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
