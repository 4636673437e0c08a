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

// Dead-letter listing bounds: the latest maxDeadLetters are shown. They are
// found with streams.TailStart where the stream allows Direct Get (the
// eventing stream jetstate creates does); elsewhere the subject is read
// from its start, at most deadLetterScan of it.
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

// deadLetters reads the latest dead letters on subject, oldest first, from
// the stream that stores them, and returns them with how many there are and
// the stream's name ("" if no stream stores the subject: dead letters
// published there were not kept).
func (c *Console) deadLetters(ctx context.Context, storage streams.Config, subject string, r *resolver) ([]DeadLetter, uint64, string, error) {
	s, total, err := c.deadLetterCount(ctx, subject)
	if s == nil || err != nil || total == 0 {
		return nil, 0, streamName(s), err
	}
	name := streamName(s)
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	if s.CachedInfo().Config.AllowDirect {
		start, err := streams.TailStart(ctx, c.js, name, subject, maxDeadLetters)
		if err != nil {
			return nil, total, name, fmt.Errorf("read dead letters %s: %w", subject, err)
		}
		oc.DeliverPolicy, oc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := s.OrderedConsumer(ctx, oc)
	if err != nil {
		return nil, total, name, fmt.Errorf("read dead letters %s: %w", subject, err)
	}
	var out []DeadLetter
	for n := 0; n < deadLetterScan; n++ {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return nil, total, name, fmt.Errorf("read dead letters %s: %w", subject, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, total, name, err
		}
		out = append(out, deadLetter(storage, meta, msg, r))
		if len(out) > maxDeadLetters {
			out = out[1:]
		}
		if meta.NumPending == 0 {
			break
		}
	}
	return out, total, name, nil
}

func streamName(s jetstream.Stream) string {
	if s == nil {
		return ""
	}
	return s.CachedInfo().Config.Name
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

// deadLetterCount counts the dead letters on subject in the stream that
// stores them: the prefix's eventing stream for the default subjects, any
// stream for one given to a projector. The stream is nil (and the count
// 0) if none stores the subject.
func (c *Console) deadLetterCount(ctx context.Context, subject string) (jetstream.Stream, uint64, error) {
	name, err := c.js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("the stream of %s: %w", subject, err)
	}
	s, err := c.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) { // deleted meanwhile
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, info.State.Subjects[subject], nil
}
