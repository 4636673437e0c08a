package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the benchmark started: in its own process group, its output in a log
// file. It is killed with its group by stop, and (Pdeathsig) if the benchmark itself dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
	err  error         // how it exited, once done is closed

	mu       sync.Mutex
	stopping bool
}

// startProc starts bin with args and env (added to this process's environment), its stdout
// and stderr in logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	return startProcIO(name, logPath, env, nil, bin, args...)
}

// startProcIO is startProc with setup called on the command before it starts (to give it
// other standard input or output).
func startProcIO(name, logPath string, env []string, setup func(*exec.Cmd) error, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if setup != nil {
		if err := setup(cmd); err != nil {
			logf.Close()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process's id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports, once the process is gone while it was not being stopped, how it ended and
// the end of its log.
func (p *proc) exited() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil
	}
	return fmt.Errorf("%s (pid %d) exited: %v; the end of its log (%s):\n%s", p.name, p.pid(), p.err, p.log, tail(p.log, 3000))
}

// stop sends SIGTERM to the process group, waits up to grace for the process to exit, then
// sends SIGKILL to the group and waits for the process. A process that has already exited is
// left alone (its group id may be reused by now).
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	pgid := p.pid() // Setpgid: the group's id is the leader's pid
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// tail is the end of a file, at most n bytes.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// group is the processes of one scenario, stopped together in the reverse order of their
// start.
type group struct {
	dir   string
	procs []*proc
}

func (g *group) add(p *proc) *proc {
	g.procs = append(g.procs, p)
	return p
}

// died is closed when any process of the group has exited; check exited() of each.
func (g *group) died() error {
	for _, p := range g.procs {
		select {
		case <-p.done:
			if err := p.exited(); err != nil {
				return err
			}
		default:
		}
	}
	return nil
}

// stopAll stops every process, the last started first.
func (g *group) stopAll() {
	for i := len(g.procs) - 1; i >= 0; i-- {
		g.procs[i].stop(10 * time.Second)
	}
}

// freePorts returns n distinct loopback ports that nothing listens on now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitHTTP polls url until it answers 200, the group loses a process, ctx ends or limit
// passes.
func waitHTTP(ctx context.Context, g *group, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := g.died(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not 200 within %v: %w", url, limit, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// binaries are the programs the benchmark runs.
type binaries struct {
	Jetstate, Cart, NATS string
}

// build builds jetstate, the cart function and nats-server (from the Go module the repository
// requires) into dir, in one go build.
func build(ctx context.Context, repo, dir string) (binaries, error) {
	b := binaries{
		Jetstate: filepath.Join(dir, "jetstate"),
		Cart:     filepath.Join(dir, "shoppingcart"),
		NATS:     filepath.Join(dir, "nats-server"),
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/jetstate", "./examples/shoppingcart/cmd/shoppingcart", "github.com/nats-io/nats-server/v2")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return b, b.check()
}

// prebuilt is the binaries in dir, which must all be there.
func prebuilt(dir string) (binaries, error) {
	b := binaries{
		Jetstate: filepath.Join(dir, "jetstate"),
		Cart:     filepath.Join(dir, "shoppingcart"),
		NATS:     filepath.Join(dir, "nats-server"),
	}
	return b, b.check()
}

func (b binaries) check() error {
	var errs []error
	for _, f := range []string{b.Jetstate, b.Cart, b.NATS} {
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// version is the first line a binary prints for its version flag or command.
func version(ctx context.Context, bin string, args ...string) string {
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func itoa(n int) string { return strconv.Itoa(n) }
