package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MessageOverhead bounds what a stored message adds to the payload it
// carries: a journal append's headers (the fence and the write id, about
// 120 bytes) and its entry's framing, with the event's type (a type URL)
// of up to about 800 bytes; a value write's headers and the Any around the
// state. It is deliberately generous: callers subtract it from MaxPayload's
// raw limit to size what they accept before anything is stored.
const MessageOverhead = 1 << 10

// MaxPayload is the largest event data one Append of a single event can
// store: the server's max_payload, or the journal stream's max message
// size if that is smaller, less MessageOverhead. It asks the server for the
// stream's configuration; ErrStreamNotFound if it does not exist.
func (j *Journal) MaxPayload(ctx context.Context) (int, error) {
	return maxPayload(ctx, j.js, j.stream)
}

// MaxPayload is the largest state one Put can store: the server's
// max_payload, or the value bucket's max value size if that is smaller,
// less MessageOverhead. It asks the server for the bucket's configuration;
// ErrStreamNotFound if it does not exist.
func (v *Values) MaxPayload(ctx context.Context) (int, error) {
	return maxPayload(ctx, v.w.js, v.w.stream)
}

// maxPayload is the smaller of the connection's max payload (what the
// server it is connected to accepts) and the stream's max message size,
// less MessageOverhead.
func maxPayload(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	limit := js.Conn().MaxPayload()
	s, err := js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 0, fmt.Errorf("max payload of %s: %w", stream, ErrStreamNotFound)
	case err != nil:
		return 0, fmt.Errorf("max payload of %s: %w", stream, err)
	}
	if m := int64(s.CachedInfo().Config.MaxMsgSize); m > 0 && m < limit {
		limit = m
	}
	return int(limit) - MessageOverhead, nil
}
