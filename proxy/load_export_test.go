package proxy

import (
	"context"
	"time"
)

// StartLoadReports starts p's load reports every period (Run does not start
// them yet) and returns the function that stops them.
func StartLoadReports(ctx context.Context, p *Proxy, period time.Duration) (stop func()) {
	return p.startLoadReportsEvery(ctx, period)
}

// MemberID is p's id in the member bucket and in its load reports.
func MemberID(p *Proxy) string { return p.sharding.me }
