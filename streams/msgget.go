package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storedMsg is one message as read back from a stream.
type storedMsg struct {
	Subject  string
	Sequence uint64
	Header   nats.Header
	Data     []byte
	Time     time.Time
}

// apiPrefix is the JetStream API subject prefix the client is configured
// with (the default, a custom prefix, or a domain's).
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}

// msgGetRequest selects one message: the last on a subject, or the first on
// a subject at or after a sequence.
type msgGetRequest struct {
	LastFor string `json:"last_by_subj,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// leaderGet asks the stream leader (never a follower, unlike Direct Get) for
// one message, so the answer includes every acknowledged write. It returns
// nil when no message matches.
//
// nats.go switches to Direct Get whenever the stream allows it, which may be
// answered by a lagging follower; reads that decide what an entity's state
// is must not be stale, hence this request of our own.
func leaderGet(ctx context.Context, js jetstream.JetStream, stream string, get msgGetRequest) (*storedMsg, error) {
	req, err := json.Marshal(get)
	if err != nil {
		return nil, err
	}
	resp, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, ErrNoJetStream
		}
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("msg get %s: %w", stream, err)
	}
	if r.Error != nil {
		switch r.Error.ErrorCode {
		case jetstream.JSErrCodeMessageNotFound:
			return nil, nil
		case jetstream.JSErrCodeStreamNotFound:
			return nil, fmt.Errorf("%w: %s", ErrStreamNotFound, stream)
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, fmt.Errorf("msg get %s: empty response", stream)
	}
	return &storedMsg{
		Subject:  r.Message.Subject,
		Sequence: r.Message.Seq,
		Header:   parseHeader(r.Message.Header),
		Data:     r.Message.Data,
		Time:     r.Message.Time,
	}, nil
}

// parseHeader decodes a stored "NATS/1.0\r\nKey: value\r\n..." block.
func parseHeader(b []byte) nats.Header {
	if len(b) == 0 {
		return nil
	}
	h := nats.Header{}
	lines := bytes.Split(b, []byte("\r\n"))
	for _, line := range lines[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		h.Add(string(bytes.TrimSpace(k)), string(bytes.TrimSpace(v)))
	}
	return h
}

// headerValue reads a header exactly as the server wrote it.
func headerValue(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// lastMsg returns the last message on subject, or nil if it has none.
func lastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string, cfg Config) (*storedMsg, error) {
	return leaderGetRetry(ctx, js, stream, msgGetRequest{LastFor: subject}, cfg)
}

// leaderGetRetry is leaderGet retried through leader elections.
func leaderGetRetry(ctx context.Context, js jetstream.JetStream, stream string, get msgGetRequest, cfg Config) (*storedMsg, error) {
	bo := newBackoff()
	for {
		actx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
		m, err := leaderGet(actx, js, stream, get)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return m, err
		}
		cfg.Logger.DebugContext(ctx, "msg get retry", "stream", stream, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// Transient reports whether a JetStream request's error is worth retrying:
// a timeout, a reconnection, or the 503 (408) a cluster answers while it
// has no leader or quorum; not a missing stream or JetStream. The journal's
// reads and writes retry on these; so do other users of JetStream that
// ride out leader elections and server restarts.
func Transient(err error) bool { return transient(err) }

// transient is Transient.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, ErrStreamNotFound), errors.Is(err, ErrNoJetStream):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return false
}
