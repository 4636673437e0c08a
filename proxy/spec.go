package proxy

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/streams"
)

// specTimeout bounds storing the discovery answer: it is for tools, so a
// slow store must not hold up the start.
const specTimeout = 5 * time.Second

// storeSpec keeps the function's discovery answer in the service's
// discovery bucket (streams.Discovery), where `jetstate console` finds the
// entity types and the descriptors that decode their events. It is best
// effort: a failure is logged, never fatal (a service provisioned by an
// older jetstate has no bucket until it is provisioned again).
func (p *Proxy) storeSpec(ctx context.Context, spec *cloudstate.EntitySpec) {
	ctx, cancel := context.WithTimeout(ctx, specTimeout)
	defer cancel()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err == nil {
		var d *streams.Discovery
		if d, err = streams.NewDiscovery(ctx, p.js, p.cfg.Storage); err == nil {
			err = d.Put(ctx, b)
		}
	}
	switch {
	case errors.Is(err, streams.ErrStreamNotFound):
		p.log.InfoContext(ctx, "no discovery bucket: the console cannot decode this service's events without -descriptors (provision the service again to make it)", "error", err)
	case err != nil:
		p.log.WarnContext(ctx, "store the discovery answer for the console", "error", err)
	}
}
