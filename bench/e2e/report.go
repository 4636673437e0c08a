package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Dapr's published figures for Dapr 1.0 (docs.dapr.io, operations/performance-and-scalability:
// perf-service-invocation and perf-actors-activation), for the table beside ours. Dapr measured
// on a 3-node Kubernetes cluster of 4-core nodes, between nodes, with mTLS and tracing (sampling
// 0.1), each sidecar limited to 0.5 vCPU, Fortio as the load tester.
const (
	daprInvokeVCPU  = 0.48 // per sidecar at 1,000 req/s, two sidecars, 1 KB payloads
	daprInvokeMB    = 23.0
	daprInvokeP90   = 1.40 // ms added by the two sidecars
	daprInvokeP99   = 2.10
	daprActorsP90   = 3.0 // ms at 500 calls/s
	daprActorsP99   = 6.2
	goalVCPU        = 0.15 // at 1,000 commands/s
	goalMB          = 30.0
	goalP99         = 2.0 // ms, end to end on loopback
	goalRate        = 1000
	daprActorsRate  = 500
	primaryScenario = "es-grpc"
	routedScenario  = "routed-grpc"
)

// renderReport is results.md: the settings, every step, the highest sustained rates, Dapr's
// figures beside ours, the goals and the profiles.
func renderReport(res Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# jetstate multi-process benchmark\n\n")
	w("Run %s on %s; %s, %s. ", res.Started.Format(time.RFC3339), res.Machine, res.Go, res.NATS)
	w("Every part is its own process: nats-server, the sidecar (`jetstate proxy`), the cart function and the load generator ")
	w("(Fortio's periodic runner; gRPC, or HTTP/JSON with Fortio's client). Each step holds its rate for %v", res.Duration)
	if res.Search > 0 {
		w(" (search steps %v)", res.Search)
	}
	w(" with %d load generator threads or more (at most 250 calls/s each), each thread with its own cart; ", res.Threads)
	w("AddItem carries a %d-byte product name. Latency is end to end as the load generator sees it, on loopback; ", res.PayloadBytes)
	w("vCPU is a process's CPU time over the step's wall time; memory is VmRSS at the step's end, VmHWM (peak) during the step ")
	w("and RssAnon (the private part of RSS: heap, stacks; the rest is mostly the binary's own pages, shared and reclaimable), in MB (10^6 bytes).\n\n")

	w("## Steps\n\n")
	w("| scenario | phase | rate/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | errors | sidecar vCPU | sidecar MB (peak; anon) | owner sidecar vCPU | owner MB (peak; anon) | nats-server vCPU | function vCPU | load gen vCPU |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sr := range res.Scenarios {
		for _, st := range sr.Steps {
			side, owner := st.Usage[procSidecar], st.Usage[procOwner]
			ownerCPU, ownerMem := "", ""
			if _, ok := st.Usage[procOwner]; ok {
				ownerCPU, ownerMem = fmt.Sprintf("%.3f", owner.VCPU), memCell(owner)
			}
			fn := st.Usage[procFunction].VCPU + st.Usage[procOwnerFn].VCPU
			w("| %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.1f | %d | %.3f | %s | %s | %s | %.3f | %.3f | %.3f |\n",
				sr.Name, st.Phase, st.Load.Target, st.Load.Achieved, st.Load.P50, st.Load.P90, st.Load.P99, st.Load.Max, st.Load.Errors,
				side.VCPU, memCell(side), ownerCPU, ownerMem, st.Usage[procNATS].VCPU, fn, st.Usage[procLoad].VCPU)
		}
	}
	w("\nSidecar memory once ready, before the first command, MB (anon):")
	for i, sr := range res.Scenarios {
		if i > 0 {
			w(";")
		}
		u := sr.Idle[procSidecar]
		w(" %s %.1f (%.1f)", sr.Name, mb(u.RSS), mb(u.Anon))
		if u, ok := sr.Idle[procOwner]; ok {
			w(", owner %.1f (%.1f)", mb(u.RSS), mb(u.Anon))
		}
	}
	w(".\n")
	w("\nIn routed scenarios the load goes to one sidecar (\"sidecar\"), which routes every command over NATS to the sidecar owning its cart's shard (\"owner sidecar\"); function vCPU is both functions'.\n")

	w("\n## Highest rate with p99 under %g ms\n\n", res.P99LimitMS)
	w("Sustained: no errors, p99 under the limit, at least 95%% of the rate achieved.\n\n")
	w("| scenario | highest sustained rate/s | its p99 ms | steps |\n|---|---:|---:|---:|\n")
	for _, sr := range res.Scenarios {
		switch {
		case sr.Error != "":
			w("| %s | failed: %s | | %d |\n", sr.Name, oneLine(sr.Error), len(sr.Steps))
		case res.Search == 0:
			w("| %s | (not searched) | | %d |\n", sr.Name, len(sr.Steps))
		case sr.MaxRate == 0:
			w("| %s | none (below %d) | | %d |\n", sr.Name, slices.Min(res.Rates), len(sr.Steps))
		default:
			capped := ""
			if sr.MaxCapped {
				capped = " (the search's limit)"
			}
			w("| %s | %d%s | %.2f | %d |\n", sr.Name, sr.MaxRate, capped, sr.MaxP99, len(sr.Steps))
		}
	}

	w("\n## Beside Dapr's published figures\n\n")
	w("Dapr's figures are its own published ones for Dapr 1.0 (service invocation: two sidecars, 1 KB payloads, 1,000 req/s; actors: 500 calls/s), ")
	w("not measured here: on a 3-node Kubernetes cluster of 4-core nodes, between nodes, with mTLS and tracing, each sidecar limited to 0.5 vCPU; ")
	w("ours are on one machine's loopback, without TLS. Dapr's service-invocation latency is what its two sidecars add to a direct call; ours is the whole command, ")
	w("end to end, including the user function and the journal append (there is no direct call to compare with).\n\n")
	w("| at | measure | Dapr | jetstate | goal |\n|---|---|---:|---|---:|\n")
	es1k, esOK := find(res, primaryScenario, goalRate)
	rt1k, rtOK := find(res, routedScenario, goalRate)
	es500, es500OK := find(res, primaryScenario, daprActorsRate)
	cell := func(ok bool, f func() string) string {
		if !ok {
			return "(not run)"
		}
		return f()
	}
	w("| 1,000/s | sidecar CPU | %.2f vCPU per sidecar | %s; %s | <= %.2f vCPU |\n", daprInvokeVCPU,
		cell(esOK, func() string { return fmt.Sprintf("%s %.3f vCPU", primaryScenario, es1k.Usage[procSidecar].VCPU) }),
		cell(rtOK, func() string {
			return fmt.Sprintf("%s %.3f + owner %.3f vCPU", routedScenario, rt1k.Usage[procSidecar].VCPU, rt1k.Usage[procOwner].VCPU)
		}), goalVCPU)
	w("| 1,000/s | sidecar memory | %.0f MB | %s; %s | <= %.0f MB |\n", daprInvokeMB,
		cell(esOK, func() string {
			u := es1k.Usage[procSidecar]
			return fmt.Sprintf("%s %.1f MB (peak %.1f, anon %.1f)", primaryScenario, mb(u.RSS), mb(u.HWM), mb(u.Anon))
		}),
		cell(rtOK, func() string {
			return fmt.Sprintf("%s %.1f + owner %.1f MB", routedScenario, mb(rt1k.Usage[procSidecar].RSS), mb(rt1k.Usage[procOwner].RSS))
		}), goalMB)
	w("| 1,000/s | p90 | +%.2f ms added | %s; %s | |\n", daprInvokeP90,
		cell(esOK, func() string { return fmt.Sprintf("%s %.2f ms", primaryScenario, es1k.Load.P90) }),
		cell(rtOK, func() string { return fmt.Sprintf("%s %.2f ms", routedScenario, rt1k.Load.P90) }))
	w("| 1,000/s | p99 | +%.2f ms added | %s; %s | < %.0f ms |\n", daprInvokeP99,
		cell(esOK, func() string { return fmt.Sprintf("%s %.2f ms", primaryScenario, es1k.Load.P99) }),
		cell(rtOK, func() string { return fmt.Sprintf("%s %.2f ms", routedScenario, rt1k.Load.P99) }), goalP99)
	w("| 500/s | p90 (Dapr: actors) | ~%.0f ms | %s | |\n", daprActorsP90,
		cell(es500OK, func() string { return fmt.Sprintf("%s %.2f ms", primaryScenario, es500.Load.P90) }))
	w("| 500/s | p99 (Dapr: actors) | ~%.1f ms | %s | |\n", daprActorsP99,
		cell(es500OK, func() string { return fmt.Sprintf("%s %.2f ms", primaryScenario, es500.Load.P99) }))

	w("\n## Goals at 1,000 commands/s\n\n")
	w("A step that did not reach 95%% of its rate is marked: its figures are of a lower rate.\n\n")
	w("| scenario | achieved/s | sidecar vCPU (<= %.2f) | sidecar MB (<= %.0f) | p99 ms (< %.0f) |\n|---|---|---|---|---|\n", goalVCPU, goalMB, goalP99)
	for _, sr := range res.Scenarios {
		st, ok := find(res, sr.Name, goalRate)
		if !ok {
			continue
		}
		u := st.Usage[procSidecar]
		achieved := fmt.Sprintf("%.0f", st.Load.Achieved)
		if st.Load.Achieved < 0.95*st.Load.Target {
			achieved += " **(short of the rate)**"
		}
		w("| %s | %s | %.3f %s | %.1f %s | %.2f %s |\n", sr.Name, achieved, u.VCPU, met(u.VCPU <= goalVCPU), mb(u.RSS), met(mb(u.RSS) <= goalMB),
			st.Load.P99, met(st.Load.P99 < goalP99))
	}

	w("\n## Where the time goes\n\n")
	w("Per command at %d/s, per process: CPU time, read-like and write-like system calls (a read that finds nothing counts), and its threads' context switches (a thread parking or preempted), each the step's total divided by its commands.\n\n", res.ProfileRate)
	w("| scenario | process | CPU us | reads | writes | switches |\n|---|---|---:|---:|---:|---:|\n")
	for _, sr := range res.Scenarios {
		st, ok := find(res, sr.Name, res.ProfileRate)
		if !ok || st.Load.Calls == 0 || st.Load.Achieved == 0 {
			continue
		}
		n := float64(st.Load.Calls)
		for _, name := range []string{procSidecar, procOwner, procFunction, procOwnerFn, procNATS} {
			u, ok := st.Usage[name]
			if !ok {
				continue
			}
			w("| %s | %s | %.0f | %.2f | %.2f | %.2f |\n", sr.Name, name, u.VCPU/st.Load.Achieved*1e6,
				float64(u.ReadCalls)/n, float64(u.WriteCalls)/n, float64(u.Switches)/n)
		}
	}
	w("\n")
	w("CPU profiles of the sidecars (their -pprof admin endpoint) during the %d/s step: `go tool pprof -top`, the %d functions with the most CPU of their own (flat), ", res.ProfileRate, res.ProfileTop)
	w("then `-top -cum`, the %d with the most CPU in them and in what they call. The profiles are in profiles/ of the output directory.\n", res.ProfileTop)
	profiled := false
	for _, sr := range res.Scenarios {
		for _, st := range sr.Steps {
			for _, name := range []string{procSidecar, procOwner} {
				top, ok := st.Profiles[name]
				if !ok {
					continue
				}
				profiled = true
				w("\n### %s at %.0f/s, %s\n\n```\n%s\n```\n", sr.Name, st.Load.Target, name, top)
				if cum := st.ProfilesCum[name]; cum != "" {
					w("\n```\n%s\n```\n", cum)
				}
			}
		}
	}
	if !profiled {
		w("\n(none taken)\n")
	}
	return b.String()
}

// find is the fixed step of scenario at rate.
func find(res Results, scenario string, rate int) (Step, bool) {
	for _, sr := range res.Scenarios {
		if sr.Name != scenario {
			continue
		}
		for _, st := range sr.Steps {
			if st.Phase == "fixed" && int(st.Load.Target) == rate {
				return st, true
			}
		}
	}
	return Step{}, false
}

// memCell is "RSS (peak; anon)" in MB.
func memCell(u Usage) string {
	return fmt.Sprintf("%.1f (%.1f; %.1f)", mb(u.RSS), mb(u.HWM), mb(u.Anon))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.ReplaceAll(s, "|", "/")
}
