package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
)

// loadgenCommand is the hidden first argument that makes this binary the load generator.
const loadgenCommand = "loadgen"

// startedLine is what the load generator prints when the timed run begins.
const startedLine = "started"

// LoadSpec is one step for the load generator.
type LoadSpec struct {
	// Target is the sidecar's ingress, host:port.
	Target string `json:"target"`
	// Transport is "grpc" or "http".
	Transport string `json:"transport"`
	// Method is the gRPC method, /package.Service/Method.
	Method string `json:"method"`
	// Path is the HTTP path, with %s where the cart's key goes.
	Path string `json:"path"`
	// Keys are the carts, one per thread.
	Keys []string `json:"keys"`
	// Rate is the target rate over all threads, calls per second.
	Rate float64 `json:"rate"`
	// Duration of the timed run.
	Duration time.Duration `json:"duration"`
	// PayloadBytes is the length of the product name.
	PayloadBytes int `json:"payload_bytes"`
	// Timeout bounds one call.
	Timeout time.Duration `json:"timeout"`
}

// LoadResult is what the load generator measured. Latencies are in milliseconds.
type LoadResult struct {
	Target   float64  `json:"target"`
	Achieved float64  `json:"achieved"`
	Calls    int64    `json:"calls"`
	Errors   int64    `json:"errors"`
	P50      float64  `json:"p50_ms"`
	P90      float64  `json:"p90_ms"`
	P99      float64  `json:"p99_ms"`
	P999     float64  `json:"p999_ms"`
	Max      float64  `json:"max_ms"`
	Avg      float64  `json:"avg_ms"`
	Seconds  float64  `json:"seconds"`
	Samples  []string `json:"error_samples,omitempty"` // the first few errors
	Warmup   []string `json:"warmup_errors,omitempty"`
	// Self is the load generator's own usage over the timed run (measured by itself: it is
	// gone by the time the harness could look).
	Self Usage `json:"self"`
}

// resolution is the latency histogram's unit: 10 us, so Fortio's buckets are 10 us wide up
// to 0.1 ms, 0.2 ms wide around 1-2 ms and 1 ms wide around 5-10 ms (interpolated within).
const resolution = 1e-5

// loadgenMain runs one step from the spec on stdin and exits.
func loadgenMain(args []string) int {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "loadgen: takes its spec as JSON on stdin")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var spec LoadSpec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: spec:", err)
		return 2
	}
	res, err := generate(ctx, spec, func() { fmt.Println(startedLine) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return 0
}

// errorLog keeps the first few error messages of a run.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) add(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) < 5 {
		l.msgs = append(l.msgs, msg)
	}
}

func (l *errorLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = nil
}

func (l *errorLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// grpcCall is one thread's AddItem over gRPC, on a connection the threads share.
type grpcCall struct {
	ctx     context.Context
	conn    *grpc.ClientConn
	method  string
	req     *shoppingcart.AddLineItem
	timeout time.Duration
	errs    *errorLog
}

func (g *grpcCall) Run(context.Context, periodic.ThreadID) (bool, string) {
	ctx, cancel := context.WithTimeout(g.ctx, g.timeout)
	defer cancel()
	if err := g.conn.Invoke(ctx, g.method, g.req, &emptypb.Empty{}); err != nil {
		g.errs.add(err.Error())
		return false, status.Code(err).String()
	}
	return true, "OK"
}

// httpCall is one thread's AddItem over HTTP/JSON, with Fortio's HTTP client: one keep-alive
// connection per thread.
type httpCall struct {
	f    fhttp.Fetcher
	url  string
	errs *errorLog
}

func (h *httpCall) Run(ctx context.Context, _ periodic.ThreadID) (bool, string) {
	code, _, _ := h.f.StreamFetch(ctx)
	if code != 200 {
		h.errs.add(fmt.Sprintf("POST %s: HTTP %d", h.url, code))
		return false, fmt.Sprint(code)
	}
	return true, "200"
}

// generate runs the step: one call per thread to warm up (connections, entities), then the
// timed run at spec.Rate, calling started when it begins. It stops early when ctx ends.
func generate(ctx context.Context, spec LoadSpec, started func()) (LoadResult, error) {
	log.SetLogLevelQuiet(log.Error)
	log.SetOutput(os.Stderr)
	if len(spec.Keys) == 0 || spec.Rate <= 0 || spec.Duration <= 0 {
		return LoadResult{}, errors.New("spec needs keys, a rate and a duration")
	}
	name := strings.Repeat("x", spec.PayloadBytes)
	errs := &errorLog{}
	runners := make([]periodic.Runnable, len(spec.Keys))
	switch spec.Transport {
	case "grpc":
		conn, err := grpc.NewClient(spec.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return LoadResult{}, err
		}
		defer conn.Close()
		for i, key := range spec.Keys {
			runners[i] = &grpcCall{ctx: ctx, conn: conn, method: spec.Method, timeout: spec.Timeout, errs: errs,
				req: &shoppingcart.AddLineItem{UserId: key, ProductId: "p1", Name: name, Quantity: 1}}
		}
	case "http":
		for i, key := range spec.Keys {
			body, err := protojson.Marshal(&shoppingcart.AddLineItem{UserId: key, ProductId: "p1", Name: name, Quantity: 1})
			if err != nil {
				return LoadResult{}, err
			}
			o := &fhttp.HTTPOptions{Payload: body, ContentType: "application/json", HTTPReqTimeOut: spec.Timeout}
			o.InitHeaders()
			url := "http://" + spec.Target + fmt.Sprintf(spec.Path, key)
			o.Init(url)
			f, err := fhttp.NewClient(o)
			if err != nil {
				return LoadResult{}, err
			}
			defer f.Close()
			runners[i] = &httpCall{f: f, url: url, errs: errs}
		}
	default:
		return LoadResult{}, fmt.Errorf("transport %q", spec.Transport)
	}

	// Warm-up: every thread's first call, concurrently, not measured.
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Go(func() { r.Run(ctx, periodic.ThreadID(i)) })
	}
	wg.Wait()
	warm := errs.list()
	errs.reset()

	opts := periodic.RunnerOptions{
		RunType:     "jetstate " + spec.Transport,
		QPS:         spec.Rate,
		Duration:    spec.Duration,
		NumThreads:  len(runners),
		Percentiles: []float64{50, 90, 99, 99.9},
		Resolution:  resolution,
		Uniform:     true, // the threads' calls spread over each period, not all at its start
		Out:         io.Discard,
	}
	r := periodic.NewPeriodicRunner(&opts)
	// After NewPeriodicRunner, which clears the runners of the options it was given.
	r.Options().Runners = runners
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			r.Options().Abort()
		case <-stopped:
		}
	}()
	self := os.Getpid()
	w, err := watchCPU(map[string]int{procLoad: self})
	if err != nil {
		return LoadResult{}, err
	}
	if err := resetPeak(self); err != nil {
		return LoadResult{}, err
	}
	started()
	res := r.Run()
	if err := ctx.Err(); err != nil {
		return LoadResult{}, err
	}
	usage, err := w.stop(res.ActualDuration.Seconds())
	if err != nil {
		return LoadResult{}, err
	}
	h := res.DurationHistogram
	out := LoadResult{
		Target: spec.Rate, Achieved: res.ActualQPS, Calls: h.Count, Errors: res.ErrorsDurationHistogram.Count,
		Max: h.Max * 1e3, Avg: h.Avg * 1e3, Seconds: res.ActualDuration.Seconds(),
		Samples: errs.list(), Warmup: warm, Self: usage[procLoad],
	}
	for _, p := range h.Percentiles {
		switch p.Percentile {
		case 50:
			out.P50 = p.Value * 1e3
		case 90:
			out.P90 = p.Value * 1e3
		case 99:
			out.P99 = p.Value * 1e3
		case 99.9:
			out.P999 = p.Value * 1e3
		}
	}
	return out, nil
}

// loadProc is a running load generator process.
type loadProc struct {
	*proc
	out   *os.File
	lines *bufio.Scanner
}

// startLoad starts the load generator for spec in g; its stderr goes to logPath.
func startLoad(self, logPath string, spec LoadSpec) (*loadProc, error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p, err := startProcIO("load generator", logPath, nil, func(cmd *exec.Cmd) error {
		cmd.Stdin = strings.NewReader(string(in))
		cmd.Stdout = w
		return nil
	}, self, loadgenCommand)
	w.Close() // the child has its copy; EOF on r once it exits
	if err != nil {
		r.Close()
		return nil, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &loadProc{proc: p, out: r, lines: sc}, nil
}

// close stops the load generator if it still runs.
func (l *loadProc) close() {
	l.stop(5 * time.Second)
	l.out.Close()
}

// next is the load generator's next line of output, or an error with its log once it ended
// without one.
func (l *loadProc) next() (string, error) {
	if l.lines.Scan() {
		return l.lines.Text(), nil
	}
	<-l.done
	return "", fmt.Errorf("load generator ended (%v) without its result; the end of its log (%s):\n%s", l.err, l.log, tail(l.log, 3000))
}
