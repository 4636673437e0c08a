package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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
}

// cpuSeconds is the CPU time a process has used so far: utime + stime of /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return st.CPUTime(), nil
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

// cpuWatch measures the CPU of some processes between start and stop.
type cpuWatch struct {
	pids  map[string]int
	start map[string]float64
}

func watchCPU(pids map[string]int) (*cpuWatch, error) {
	w := &cpuWatch{pids: pids, start: map[string]float64{}}
	for name, pid := range pids {
		s, err := cpuSeconds(pid)
		if err != nil {
			return nil, fmt.Errorf("cpu of %s: %w", name, err)
		}
		w.start[name] = s
	}
	return w, nil
}

// stop returns each process's vCPU over wall seconds and its memory now.
func (w *cpuWatch) stop(wall float64) (map[string]Usage, error) {
	out := map[string]Usage{}
	for name, pid := range w.pids {
		s, err := cpuSeconds(pid)
		if err != nil {
			return nil, fmt.Errorf("cpu of %s: %w", name, err)
		}
		u, err := memory(pid)
		if err != nil {
			return nil, fmt.Errorf("memory of %s: %w", name, err)
		}
		u.VCPU = (s - w.start[name]) / wall
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
	return fmt.Sprintf("%d x %s, %s memory, Linux %s, load average (1 min) at start %s", cpus, model, mem, kernel, load)
}
