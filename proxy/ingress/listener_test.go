package ingress

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAcceptSurvivesFDExhaustion runs out of file descriptors while a
// client connects: the failed accept (EMFILE) is retried, not the end of
// the ingress, and the waiting client is served once descriptors are free.
// It runs in a child process, whose descriptor limit it lowers.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	if os.Getenv("JETSTATE_TEST_FD_CHILD") == "" {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestAcceptSurvivesFDExhaustion$", "-test.v", "-test.count=1", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), "JETSTATE_TEST_FD_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestAcceptSurvivesFDExhaustion") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	logs := make(logRecords, 100)
	addr, ended := serve(t, Config{Log: slog.New(logs)}, nil)
	if code, err := probe(nil, addr); err != nil || code != 200 {
		t.Fatalf("probe = %d, %v", code, err)
	}

	// Lower the limit to what is open plus a few, then take every free
	// descriptor but one.
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open descriptors: %v", err)
	}
	lowered := saved
	lowered.Cur = uint64(len(open) + 8)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Skipf("cannot lower the descriptor limit: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })
	var fillers []int
	release := func() {
		for _, fd := range fillers {
			syscall.Close(fd)
		}
		fillers = nil
	}
	t.Cleanup(release)
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, fd)
	}
	if len(fillers) == 0 {
		t.Fatal("no descriptor was free")
	}
	syscall.Close(fillers[0])
	fillers = fillers[1:]

	// The client's socket takes the last descriptor; the server has none
	// left to accept it with.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		select {
		case stopped := <-ended:
			t.Fatalf("dial: %v; the ingress stopped: %v", err, stopped)
		default:
			t.Fatal(err)
		}
	}
	failsafe := time.After(time.Minute)
	for seen := false; !seen; {
		select {
		case r := <-logs:
			r.Attrs(func(a slog.Attr) bool {
				if err, ok := a.Value.Any().(error); ok && errors.Is(err, syscall.EMFILE) {
					seen = true
				}
				return true
			})
		case err := <-ended:
			t.Fatalf("the ingress stopped: %v", err)
		case <-failsafe:
			t.Fatal("no failed accept within a minute")
		}
	}
	release()
	if code, err := probe(conn, addr); err != nil || code != 200 {
		t.Fatalf("probe on the connection made while out of descriptors = %d, %v", code, err)
	}
	if code, err := probe(nil, addr); err != nil || code != 200 {
		t.Fatalf("probe afterwards = %d, %v", code, err)
	}
	select {
	case err := <-ended:
		t.Fatalf("the ingress stopped: %v", err)
	default:
	}
}
