package projections

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Sink receives a projection's CloudEvents.
//
// Send returns nil only once the destination has accepted the event: the
// projection acknowledges the journal message after that and never offers
// the event again (unless it restarts before the acknowledgement landed,
// so a sink sees an event at least once, with the same id every time). An
// error makes the projection retry with back-off; an error wrapping
// ErrRejected sends the event to the dead-letter subject at once.
//
// Send is called from several goroutines at once, but never for two events
// of one entity at the same time: an entity's events arrive one after the
// other, in journal order. Send must not keep ev after it returns, and
// should return promptly once ctx is done.
type Sink interface {
	Send(ctx context.Context, ev *event.Event) error
}

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ctx context.Context, ev *event.Event) error

// Send calls f.
func (f SinkFunc) Send(ctx context.Context, ev *event.Event) error { return f(ctx, ev) }
