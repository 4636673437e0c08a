package console

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/proxy/eventing"
)

// Subscription is one eventing consumer group as a page shows it.
type Subscription struct {
	Service     string // the subscribing gRPC service
	Group       string
	Source      string // "event_log:<pid>" or "topic:<name>"
	Methods     []string
	Consumer    string
	Stream      string
	Missing     bool // no consumer yet: no sidecar bound it
	Pending     uint64
	AckPending  int
	Redelivered int
	Delivered   uint64
	AckFloor    uint64
}

type eventingView struct {
	layout
	Problem       string
	Subscriptions []Subscription
	Dead          []DeadLetter
	DeadLetters   uint64
	DeadSubject   string
	DeadStream    string // the stream storing DeadSubject, "" if none
}

// eventingPage lists the function's eventing subscriptions with their
// consumers' lag, and the service's eventing dead letters.
func (c *Console) eventingPage(w http.ResponseWriter, r *http.Request) error {
	storage, err := c.storage(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	in, err := c.info(ctx, storage)
	if err != nil {
		return err
	}
	v := eventingView{layout: c.layout(r, storage.Service, "eventing"), Problem: in.Problem, DeadSubject: eventing.DeadLetterSubject(storage)}
	if in.Model != nil {
		for _, s := range in.Model.Eventing.Subscriptions {
			sub := Subscription{Service: string(s.Service.Desc.FullName()), Group: s.Group, Source: s.Source(),
				Consumer: eventing.ConsumerName(storage, s), Stream: storage.EventingStream()}
			if s.EventLog != "" {
				sub.Stream = storage.JournalStream()
			}
			for _, m := range s.ByType {
				sub.Methods = append(sub.Methods, string(m.Desc.Name()))
			}
			if s.Any != nil {
				sub.Methods = append(sub.Methods, string(s.Any.Desc.Name()))
			}
			slices.Sort(sub.Methods)
			sub.Methods = slices.Compact(sub.Methods)
			cons, err := c.js.Consumer(ctx, sub.Stream, sub.Consumer)
			switch {
			case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
				sub.Missing = true
			case err != nil:
				return fmt.Errorf("consumer %s: %w", sub.Consumer, err)
			default:
				ci := cons.CachedInfo()
				sub.Pending, sub.AckPending, sub.Redelivered = ci.NumPending, ci.NumAckPending, ci.NumRedelivered
				sub.Delivered, sub.AckFloor = ci.Delivered.Stream, ci.AckFloor.Stream
			}
			v.Subscriptions = append(v.Subscriptions, sub)
		}
	}
	slices.SortFunc(v.Subscriptions, func(a, b Subscription) int {
		return strings.Compare(a.Service+a.Group+a.Source, b.Service+b.Group+b.Source)
	})
	if v.Dead, v.DeadLetters, v.DeadStream, err = c.deadLetters(ctx, storage, v.DeadSubject, in.Resolver); err != nil {
		return err
	}
	c.render(w, http.StatusOK, "eventing", v)
	return nil
}
