// Command e2e is jetstate's multi-process benchmark (`make bench-e2e`): performance as an
// operator measures it, with every part in its own process as in a pod.
//
// For each scenario it starts a nats-server (built from its Go module, its store in a temp
// directory), the cart function (examples/shoppingcart/cmd/shoppingcart) and the sidecar
// (`jetstate proxy`, built from ./cmd/jetstate) in front of it, then drives AddItem commands
// with 1 KB product names at fixed rates through a load generator process: Fortio's periodic
// runner (fortio.org/fortio/periodic), calling over gRPC (grpc-go) or HTTP/JSON (Fortio's fhttp
// client, through the sidecar's google.api.http transcoding). Each Fortio thread is one client
// with its own cart, so the load is spread over as many entities as threads. A routed scenario
// runs two sidecars, each with its function, and sends every command to the sidecar that does
// not own the command's shard (keys picked from the shard table).
//
// Per step it records the achieved rate, latency percentiles and errors as the load generator
// saw them, and for every process (the sidecars above all) the CPU used over the step (utime +
// stime from /proc/<pid>/stat, divided by the step's wall time: vCPU) and the memory (VmRSS at
// the end, VmHWM since the step began, reset through /proc/<pid>/clear_refs). After the fixed
// rates it searches for the highest rate served with no errors, p99 under the limit and at
// least 95% of the asked rate. At one rate it takes a CPU profile of each sidecar (its admin
// port's /debug/pprof, the sidecar's -pprof flag) and writes `go tool pprof -top` of it.
//
// It writes results.md (the tables, Dapr's published figures beside ours, the goals, the
// profiles' top functions), results.json (every step) and latency.svg (p99 latency against
// throughput, drawn with gonum.org/v1/plot) to -out, and prints results.md. Processes are
// started in their own process groups, on free loopback ports, and stopped (SIGTERM, then
// SIGKILL to the group) on every way out; a process that dies mid-run ends the run with the
// tail of its log.
//
// The load generator is this binary run again with the hidden first argument "loadgen": a
// step's spec as JSON on stdin, "started" on stdout when the timed run begins, then the result
// as JSON. Its own CPU is measured like the other processes'.
package main
