package load

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	loadpb "github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams"
)

// DefaultReportPeriod is how often a sidecar publishes its load for the
// autoscaler (the reference proxy's stats.report-period).
const DefaultReportPeriod = time.Second

// concurrency measures one kind of work: how many are in flight, averaged
// over time. Between two takes it integrates the number in flight over
// time, so a take yields the time-weighted average concurrency of the
// interval, however short or long the individual operations were (an
// operation still in flight counts for the part of it inside the interval).
// It is safe for concurrent use; the zero value is ready and starts its
// first interval at the first begin or take.
type concurrency struct {
	mu       sync.Mutex
	inFlight int64
	last     time.Time     // last change of inFlight, or last take
	start    time.Time     // start of the current interval
	area     time.Duration // integral of inFlight since start, up to last
	count    int64         // begun since start
}

// concurrencySample is one interval of a concurrency.
type concurrencySample struct {
	interval time.Duration
	area     time.Duration // in-flight time of all operations inside the interval
	count    int64
}

// average is the time-weighted average number in flight.
func (s concurrencySample) average() float64 {
	if s.interval <= 0 {
		return 0
	}
	return float64(s.area) / float64(s.interval)
}

// advance adds the time since the last change; mu is held.
func (c *concurrency) advance(now time.Time) {
	if c.start.IsZero() {
		c.start, c.last = now, now
		return
	}
	if d := now.Sub(c.last); d > 0 {
		c.area += time.Duration(c.inFlight) * d
		c.last = now
	}
}

// begin counts one operation in. Every begin must be followed by one end.
func (c *concurrency) begin() {
	now := time.Now()
	c.mu.Lock()
	c.advance(now)
	c.inFlight++
	c.count++
	c.mu.Unlock()
}

// resume counts one operation in again that end took out (it is not
// counted as a new one).
func (c *concurrency) resume() {
	now := time.Now()
	c.mu.Lock()
	c.advance(now)
	c.inFlight++
	c.mu.Unlock()
}

// end counts one operation out.
func (c *concurrency) end() {
	now := time.Now()
	c.mu.Lock()
	c.advance(now)
	c.inFlight--
	c.mu.Unlock()
}

// take ends the current interval at now and starts the next one.
func (c *concurrency) take(now time.Time) concurrencySample {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(now)
	s := concurrencySample{interval: now.Sub(c.start), area: c.area, count: c.count}
	c.start, c.area, c.count = now, 0, 0
	return s
}

// Stats is one sidecar's load, as the autoscaler sees it: client
// requests in the ingress, commands in the user function, and operations
// on the store. A command whose reply arrived moves from function to
// journal while its state change is stored (storing), so the two do not
// overlap and the autoscaler can subtract store time from request time.
type Stats struct {
	requests concurrency
	function concurrency
	journal  concurrency
}

// Request counts a client request in; done counts it out.
func (l *Stats) Request() (done func()) {
	l.requests.begin()
	return l.requests.end
}

// Function counts a command in the user function; done counts it out.
func (l *Stats) Function() (done func()) {
	l.function.begin()
	return l.function.end
}

// Store counts an operation on the store (an activation's loading) in;
// done counts it out.
func (l *Stats) Store() (done func()) {
	l.journal.begin()
	return l.journal.end
}

// Storing moves one command from the function to the journal; the
// returned func moves it back (call it before the command's end).
func (l *Stats) Storing() (back func()) {
	l.function.end()
	l.journal.begin()
	return func() {
		l.journal.end()
		l.function.resume()
	}
}

// Report takes all three at now: the averages since the previous Report.
func (l *Stats) Report(member, service string, now time.Time) *loadpb.Report {
	r, f, j := l.requests.take(now), l.function.take(now), l.journal.take(now)
	return &loadpb.Report{
		Member:              member,
		Service:             service,
		IntervalNanos:       int64(r.interval),
		RequestConcurrency:  r.average(),
		RequestCount:        r.count,
		RequestTimeNanos:    int64(r.area),
		FunctionConcurrency: f.average(),
		FunctionCount:       f.count,
		FunctionTimeNanos:   int64(f.area),
		JournalConcurrency:  j.average(),
		JournalCount:        j.count,
		JournalTimeNanos:    int64(j.area),
		SentUnixNanos:       now.UnixNano(),
	}
}

// Reporter publishes a sidecar's load every period on the service's
// load subject (streams.Config.LoadSubject), fire and forget: a report is
// small and the next one supersedes it, so a lost one only delays the
// autoscaler by a period.
type Reporter struct {
	nc      *nats.Conn
	subject string
	member  string
	service string
	period  time.Duration
	stats   *Stats
	// OnError is told of the first failure after a success; nil ignores.
	OnError func(error)
}

// NewReporter reports stats as member of storage's service every period
// (DefaultReportPeriod if zero).
func NewReporter(nc *nats.Conn, storage streams.Config, member string, stats *Stats, period time.Duration) *Reporter {
	if period <= 0 {
		period = DefaultReportPeriod
	}
	return &Reporter{nc: nc, subject: storage.LoadSubject(), member: member, service: storage.Service, period: period, stats: stats}
}

// Run publishes a report every period until ctx is done. The first
// interval starts now (what happened before is dropped).
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.period)
	defer t.Stop()
	r.stats.Report(r.member, r.service, time.Now()) // start the first interval here
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := proto.Marshal(r.stats.Report(r.member, r.service, time.Now()))
		if err == nil {
			err = r.nc.Publish(r.subject, data)
		}
		if err != nil && !failing && r.OnError != nil {
			r.OnError(err)
		}
		failing = err != nil
	}
}

// Start runs a Reporter until ctx is done or the returned stop is called;
// stop waits for it to end.
func Start(ctx context.Context, r *Reporter) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	return func() { cancel(); <-done }
}
