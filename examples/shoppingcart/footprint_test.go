//go:build linux

package shoppingcart_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSidecarFootprint measures what every pod pays for its sidecar
// before any work, with the jetstate binary built as its image builds it
// (CGO_ENABLED=0, -trimpath, -ldflags "-s -w"):
//
//   - binary-MiB: the binary's size;
//   - start-ms: from starting `jetstate proxy` to its /ready answering 200,
//     against NATS and the cart function, both up already in this process;
//   - ready-rss-MiB, ready-peak-MiB: its VmRSS and VmHWM at that moment.
//
// Each iteration runs one sidecar process, which it stops with SIGTERM; the
// figures are means over the iterations. (The peak of a process that ends at
// once, such as `jetstate proxy -h`, cannot be read here: the rusage of a
// child of this large process counts this one's memory, which the child
// shared until its exec. /usr/bin/time -f %M measures it.)
func BenchmarkSidecarFootprint(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "jetstate")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/jetstate/jetstate/cmd/jetstate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build jetstate: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	s := startSystemTB(b)
	s.stop() // the in-process sidecar; the processes below replace it
	ufPort := s.ufAddr[strings.LastIndexByte(s.ufAddr, ':')+1:]
	var start, rss, hwm float64
	n := 0
	for b.Loop() {
		port, admin := freePort(b), freePort(b)
		cmd := exec.Command(bin, "proxy", "-service", "shoppingcart", "-port", strconv.Itoa(port),
			"-admin", "127.0.0.1:"+strconv.Itoa(admin), "-user-function-host", "127.0.0.1",
			"-user-function-port", ufPort, "-nats-url", s.nats.ClientURL())
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ready := fmt.Sprintf("http://127.0.0.1:%d/ready", admin)
		for deadline := t0.Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if resp, err := http.Get(ready); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				b.Fatal("sidecar process not ready within 30s")
			}
		}
		start += float64(time.Since(t0).Microseconds()) / 1000
		rss += float64(processStatus(b, cmd.Process.Pid, "VmRSS:"))
		hwm += float64(processStatus(b, cmd.Process.Pid, "VmHWM:"))
		http.DefaultClient.CloseIdleConnections()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Errorf("sidecar: %v", err)
		}
		n++
	}
	const mib = 1 << 20
	b.ReportMetric(float64(fi.Size())/mib, "binary-MiB")
	b.ReportMetric(start/float64(n), "start-ms")
	b.ReportMetric(rss/float64(n)/mib, "ready-rss-MiB")
	b.ReportMetric(hwm/float64(n)/mib, "ready-peak-MiB")
}

// processStatus reads a field of /proc/<pid>/status given in kB, in bytes.
func processStatus(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
