package proxy

import (
	"context"
	"time"
)

// StartLoadReports starts a second reporter of p's load, every period
// (Run's reports every second; each measurement goes into exactly one of
// the two), and returns the function that stops it.
func StartLoadReports(ctx context.Context, p *Proxy, period time.Duration) (stop func()) {
	return p.startLoadReportsEvery(ctx, period)
}

// MemberID is p's id in the member bucket and in its load reports.
func MemberID(p *Proxy) string { return p.sharding.me }
