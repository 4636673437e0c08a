package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// crdtLedger is what a convergence run's clients know: the updates that
// were acknowledged, and those whose outcome is unknown (an error: the
// update may or may not have been applied).
type crdtLedger struct {
	mu                 sync.Mutex
	gc, gcUnknown      uint64
	pn, pnUnknown      int64 // pnUnknown: sum of |change|
	added, removed     map[string]bool
	addUnk, removedUnk map[string]bool
	flag               bool
}

// TestCRDTReplicasConverge: three sidecars on a 3-node cluster (R3) update
// four CRDTs concurrently with every write consistency; midway a NATS node
// stops and a sidecar is killed (its connection drops, no graceful leave). Afterwards the two survivors and a sidecar started
// fresh report the same values, equal to the sequential specification of
// the acknowledged updates (within the updates whose outcome is unknown).
func TestCRDTReplicasConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := streamstest.RunCluster(t, 3)
	tune := func(cfg *proxy.Config) {
		cfg.Provision = &streams.StoreConfig{Replicas: 3, MemberTTL: 2 * time.Second}
		cfg.CRDTWriteTimeout = 3 * time.Second
	}
	var side []*crdtSidecar
	for range 3 {
		side = append(side, startCRDTSidecar(t, c.JetStream(t), tune))
	}
	l := &crdtLedger{added: map[string]bool{}, removed: map[string]bool{}, addUnk: map[string]bool{}, removedUnk: map[string]bool{}}
	const ops = 60
	midway := make(chan struct{})
	var halfway sync.WaitGroup
	halfway.Add(3)
	var wg sync.WaitGroup
	for w, s := range side {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []string
			for i := range ops {
				if i == ops/2 {
					halfway.Done()
					<-midway
					if w == 2 {
						return // its sidecar was stopped
					}
				}
				wc := crdtpb.CrdtWriteConsistency(r.IntN(3))
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				// A LOCAL update acknowledged by the sidecar that is killed
				// may die with it: its outcome is unknown.
				call := func(cmd crdtCmd) error {
					_, err := s.client.call(ctx, "Apply", cmd)
					if err == nil && w == 2 && wc == crdtpb.CrdtWriteConsistency_LOCAL {
						return errors.New("acknowledged LOCAL by the sidecar killed later")
					}
					return err
				}
				switch r.IntN(4) {
				case 0:
					n := uint64(r.IntN(5) + 1)
					err := call(crdtCmd{key: "gc", delta: gcounter(n), consistency: wc})
					l.mu.Lock()
					if err == nil {
						l.gc += n
					} else {
						l.gcUnknown += n
					}
					l.mu.Unlock()
				case 1:
					n := int64(r.IntN(11) - 5)
					err := call(crdtCmd{key: "pn", delta: pncounter(n), consistency: wc})
					l.mu.Lock()
					if err == nil {
						l.pn += n
					} else {
						l.pnUnknown += max(n, -n)
					}
					l.mu.Unlock()
				case 2:
					if len(mine) > 0 && r.IntN(3) == 0 {
						e := mine[r.IntN(len(mine))]
						mine = slices.DeleteFunc(mine, func(x string) bool { return x == e })
						err := call(crdtCmd{key: "or", delta: orset(nil, []string{e}), consistency: wc})
						l.mu.Lock()
						if err == nil {
							l.removed[e] = true
						} else {
							l.removedUnk[e] = true
						}
						l.mu.Unlock()
						break
					}
					e := fmt.Sprintf("w%d-%d", w, i)
					err := call(crdtCmd{key: "or", delta: orset([]string{e}, nil), consistency: wc})
					l.mu.Lock()
					if err == nil {
						l.added[e] = true
						mine = append(mine, e)
					} else {
						l.addUnk[e] = true
					}
					l.mu.Unlock()
				case 3:
					err := call(crdtCmd{key: "flag", delta: flag(), consistency: wc})
					if err == nil {
						l.mu.Lock()
						l.flag = true
						l.mu.Unlock()
					}
				}
				cancel()
			}
		})
	}
	halfway.Wait()
	c.Servers[1].Stop()
	side[2].kill()
	close(midway)
	wg.Wait()
	c.Servers[1].Start()

	fresh := startCRDTSidecar(t, c.JetStream(t), tune)
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("acknowledged: gc %d (+%d unknown), pn %d (±%d unknown), or +%d -%d (%d/%d unknown), flag %v",
		l.gc, l.gcUnknown, l.pn, l.pnUnknown, len(l.added), len(l.removed), len(l.addUnk), len(l.removedUnk), l.flag)
	var want map[string]string
	for i, s := range []*crdtSidecar{side[0], side[1], fresh} {
		got := map[string]string{}
		for _, key := range []string{"gc", "pn", "or", "flag"} {
			v := waitValue(t, s.client, key, fmt.Sprintf("sidecar %d, %s", i, key), func(v *crdtpb.CrdtDelta) bool {
				return l.allows(key, v) == ""
			})
			got[key] = v.String()
		}
		if want == nil {
			want = got
			continue
		}
		// The others converge on the first survivor's values.
		for key, w := range want {
			waitValue(t, s.client, key, fmt.Sprintf("sidecar %d converges on %s", i, key), func(v *crdtpb.CrdtDelta) bool { return v.String() == w })
		}
	}
	// Every replica, survivors included, ends on the same values.
	for i, s := range []*crdtSidecar{side[0], side[1], fresh} {
		for key, w := range want {
			waitValue(t, s.client, key, fmt.Sprintf("sidecar %d final %s", i, key), func(v *crdtpb.CrdtDelta) bool { return v.String() == w })
		}
	}
}

// allows says what is wrong with v as the value of key under the ledger
// ("" if nothing).
func (l *crdtLedger) allows(key string, v *crdtpb.CrdtDelta) string {
	switch key {
	case "gc":
		n := v.GetGcounter().GetIncrement()
		if n < l.gc || n > l.gc+l.gcUnknown {
			return fmt.Sprintf("gcounter %d outside [%d, %d]", n, l.gc, l.gc+l.gcUnknown)
		}
	case "pn":
		n := v.GetPncounter().GetChange()
		if d := n - l.pn; max(d, -d) > l.pnUnknown {
			return fmt.Sprintf("pncounter %d, acknowledged %d ± %d", n, l.pn, l.pnUnknown)
		}
	case "or":
		got := map[string]bool{}
		for _, a := range v.GetOrset().GetAdded() {
			got[string(a.GetValue()[2:])] = true
		}
		for e := range l.added {
			if !l.removed[e] && !l.removedUnk[e] && !got[e] {
				return "orset misses " + e
			}
		}
		for e := range got {
			if l.removed[e] || (!l.added[e] && !l.addUnk[e]) {
				return "orset has " + e
			}
		}
	case "flag":
		if l.flag && !v.GetFlag().GetValue() {
			return "flag off"
		}
	}
	return ""
}
