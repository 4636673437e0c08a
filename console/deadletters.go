package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/payload"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// Dead-letter listing bounds: the latest maxDeadLetters are shown, of at
// most deadLetterScan read.
const (
	maxDeadLetters = 50
	deadLetterScan = 10000
)

// DeadLetter is one dead letter as a page shows it.
type DeadLetter struct {
	StreamSeq uint64
	Time      string
	Cause     string
	Reason    string
	Tries     string
	Entity    string // type/key of the journal event, if known
	EventSeq  string // its journal stream sequence
	EventID   string
	Data      Decoded
}

// deadLetters reads the latest dead letters on subject from the prefix's
// eventing stream, oldest first, and how many there are.
func (c *Console) deadLetters(ctx context.Context, storage streams.Config, subject string, r *resolver) ([]DeadLetter, uint64, error) {
	s, total, err := c.deadLetterCount(ctx, storage, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, nil
	}
	if err != nil || total == 0 {
		return nil, 0, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, total, fmt.Errorf("read dead letters %s: %w", subject, err)
	}
	var out []DeadLetter
	for n := 0; n < deadLetterScan; n++ {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return nil, total, fmt.Errorf("read dead letters %s: %w", subject, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, total, err
		}
		out = append(out, deadLetter(storage, meta, msg, r))
		if len(out) > maxDeadLetters {
			out = out[1:]
		}
		if meta.NumPending == 0 {
			break
		}
	}
	return out, total, nil
}

func deadLetter(storage streams.Config, meta *jetstream.MsgMetadata, msg jetstream.Msg, r *resolver) DeadLetter {
	h := msg.Headers()
	d := DeadLetter{
		StreamSeq: meta.Sequence.Stream, Time: meta.Timestamp.UTC().Format(time.DateTime),
		Cause: h.Get(projections.HeaderCause), Reason: h.Get(projections.HeaderReason), Tries: h.Get(projections.HeaderTries),
		EventSeq: h.Get(projections.HeaderStreamSeq),
	}
	if subj := h.Get(projections.HeaderJournalSubject); subj != "" {
		if e, err := storage.ParseSubject(subj); err == nil {
			d.Entity = e.String()
		} else {
			d.Entity = subj
		}
	}
	if h.Get(projections.HeaderDataOmitted) != "" {
		d.Data = Decoded{Note: "the event was too large to keep in its dead letter"}
		return d
	}
	ev, err := projections.EventFromNATS(&nats.Msg{Subject: msg.Subject(), Header: h, Data: msg.Data()})
	if err != nil {
		// Not a CloudEvent: the journal's bytes, typed by a header.
		d.Data = r.decode(h.Get(projections.HeaderEventType), msg.Data())
		return d
	}
	d.EventID = ev.ID()
	ct := ev.DataContentType()
	switch {
	case strings.HasPrefix(ct, "application/json"), strings.HasSuffix(ct, "+json"):
		d.Data = jsonDecoded(ev.Type(), ev.Data())
	case strings.HasPrefix(ct, "application/vnd.cloudstate.protobuf.any"):
		d.Data = r.decodeAny(ev.Data())
	case strings.HasPrefix(ct, "text/plain"):
		d.Data = r.decode("p.cloudstate.io/string", payload.Wrap(ev.Data()))
		d.Data.Type = ev.Type()
	case strings.HasPrefix(ct, projections.ContentTypeProtobuf):
		d.Data = r.decode(ev.Type(), ev.Data())
	default:
		d.Data = r.decode("p.cloudstate.io/bytes", payload.Wrap(ev.Data()))
		d.Data.Type = ev.Type()
	}
	return d
}

// deadLetterCount counts the dead letters on subject.
func (c *Console) deadLetterCount(ctx context.Context, storage streams.Config, subject string) (jetstream.Stream, uint64, error) {
	s, err := c.js.Stream(ctx, storage.EventingStream())
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", storage.EventingStream(), err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", storage.EventingStream(), err)
	}
	return s, info.State.Subjects[subject], nil
}
