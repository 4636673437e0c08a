package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// Usage is what one process used over a step.
type Usage struct {
	// VCPU is CPU time (user + system) over the step's wall time: 1 is one core busy.
	VCPU float64 `json:"vcpu"`
	// RSS is VmRSS at the end of the step, bytes.
	RSS uint64 `json:"rss"`
	// HWM is VmHWM, the peak resident set since the step began, bytes.
	HWM uint64 `json:"hwm"`
	// Anon is RssAnon at the end of the step: the private memory (heap, stacks) within RSS,
	// bytes. The rest is mostly the binary's own pages (RssFile), shared and reclaimable.
	Anon uint64 `json:"rss_anon"`
	// ReadCalls and WriteCalls are the read-like and write-like system calls the process
	// made over the step (syscr and syscw of /proc/<pid>/io: read, recvmsg, write, sendmsg,
	// ...; a read that finds nothing counts too). Switches is the context switches of all its
	// threads (voluntary and not, /proc/<pid>/task/*/status): each is a thread going to sleep
	// or being preempted, mostly Go's scheduler parking an idle thread on a futex.
	ReadCalls  uint64 `json:"read_calls"`
	WriteCalls uint64 `json:"write_calls"`
	Switches   uint64 `json:"switches"`
}

// counters are a process's running totals: CPU seconds, read and write system calls, and
// its threads' context switches.
type counters struct {
	cpu                 float64
	reads, writes, ctxs uint64
}

func readCounters(pid int) (counters, error) {
	var c counters
	p, err := procfs.NewProc(pid)
	if err != nil {
		return c, err
	}
	st, err := p.Stat()
	if err != nil {
		return c, err
	}
	c.cpu = st.CPUTime()
	io, err := p.IO()
	if err != nil {
		return c, err
	}
	c.reads, c.writes = io.SyscR, io.SyscW
	threads, err := procfs.AllThreads(pid)
	if err != nil {
		return c, err
	}
	for _, t := range threads {
		ts, err := t.NewStatus()
		if err != nil {
			continue // the thread ended meanwhile: its switches are lost, a handful at most
		}
		c.ctxs += ts.TotalCtxtSwitches()
	}
	return c, nil
}

// memory is a process's VmRSS, VmHWM and RssAnon from /proc/<pid>/status, bytes.
func memory(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return Usage{}, err
	}
	return Usage{RSS: st.VmRSS, HWM: st.VmHWM, Anon: st.RssAnon}, nil
}

// resetPeak sets a process's VmHWM back to its current RSS (Linux's clear_refs value 5), so
// that the next VmHWM is the peak of what follows.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// cpuWatch measures the CPU, system calls and context switches of some processes between
// start and stop.
type cpuWatch struct {
	pids  map[string]int
	start map[string]counters
}

func watchCPU(pids map[string]int) (*cpuWatch, error) {
	w := &cpuWatch{pids: pids, start: map[string]counters{}}
	for name, pid := range pids {
		c, err := readCounters(pid)
		if err != nil {
			return nil, fmt.Errorf("counters of %s: %w", name, err)
		}
		w.start[name] = c
	}
	return w, nil
}

// stop returns each process's vCPU over wall seconds, its system calls and switches since
// the start, and its memory now.
func (w *cpuWatch) stop(wall float64) (map[string]Usage, error) {
	out := map[string]Usage{}
	for name, pid := range w.pids {
		c, err := readCounters(pid)
		if err != nil {
			return nil, fmt.Errorf("counters of %s: %w", name, err)
		}
		u, err := memory(pid)
		if err != nil {
			return nil, fmt.Errorf("memory of %s: %w", name, err)
		}
		s := w.start[name]
		u.VCPU = (c.cpu - s.cpu) / wall
		u.ReadCalls, u.WriteCalls, u.Switches = since(c.reads, s.reads), since(c.writes, s.writes), since(c.ctxs, s.ctxs)
		out[name] = u
	}
	return out, nil
}

// machine describes where the benchmark ran: CPUs, their model, the kernel, the load.
func machine() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return "?"
	}
	model := "?"
	cpus := 0
	if infos, err := fs.CPUInfo(); err == nil && len(infos) > 0 {
		model, cpus = infos[0].ModelName, len(infos)
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	load := "?"
	if l, err := fs.LoadAvg(); err == nil {
		load = strconv.FormatFloat(l.Load1, 'f', 2, 64)
	}
	mem := "?"
	if m, err := fs.Meminfo(); err == nil && m.MemTotal != nil {
		mem = fmt.Sprintf("%.0f GiB", float64(*m.MemTotal)/(1<<20))
	}
	return fmt.Sprintf("%d x %s, %s memory, Linux %s, load average (1 min) at start %s; a system call takes %s here (getppid, mean of 10^6; Meltdown mitigation: %s)",
		cpus, model, mem, kernel, load, syscallCost(), meltdown())
}

// meltdown is the kernel's word on the Meltdown mitigation: "Mitigation: PTI" (page-table
// isolation, which makes every system call and interrupt switch page tables, several times
// dearer) or "Not affected".
func meltdown() string {
	b, err := os.ReadFile("/sys/devices/system/cpu/vulnerabilities/meltdown")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// syscallCost is the mean time of the cheapest system call, getppid: what entering and leaving
// the kernel costs on this machine. Virtual machines differ by several times in it, and the
// sidecar's CPU per command is mostly system calls, so it tells runs on different machines
// apart.
func syscallCost() string {
	const n = 1_000_000
	start := time.Now()
	for range n {
		syscall.Getppid()
	}
	return fmt.Sprintf("%.0f ns", float64(time.Since(start).Nanoseconds())/n)
}

// since is now - then, or 0 if a count went down (a thread that ended took its switches).
func since(now, then uint64) uint64 {
	if now < then {
		return 0
	}
	return now - then
}
