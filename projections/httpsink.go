package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/propagation"

	"github.com/jetstate/jetstate/internal/cebinding"
	"github.com/jetstate/jetstate/internal/tracing"
)

// HTTPSinkConfig configures an HTTPSink.
type HTTPSinkConfig struct {
	// Target is the URL events are POSTed to, for example a Knative sink
	// (the caller reads K_SINK). Required.
	Target string

	// Structured sends the JSON event format (content type
	// application/cloudevents+json) instead of binary mode (ce-* headers,
	// data as the body with its own content type).
	Structured bool

	// Client sends the requests. Default: a client whose transport keeps
	// up to 64 idle connections to the target.
	Client *http.Client

	// Header is added to every request (authorization, say).
	Header http.Header
}

// HTTPSink POSTs CloudEvents to a URL (the CloudEvents HTTP binding, as a
// Knative sink expects them). It is safe for concurrent use.
//
// A 2xx answer accepts the event. 5xx, 404, 408, 409 and 429 and transport
// errors are retried by the projection (Knative's retry rules); any other
// answer wraps ErrRejected and sends the event to the dead-letter subject.
type HTTPSink struct {
	cfg    HTTPSinkConfig
	target string
}

// NewHTTPSink returns a sink posting to cfg.Target.
func NewHTTPSink(cfg HTTPSinkConfig) (*HTTPSink, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http sink: target %q is not an http(s) URL", cfg.Target)
	}
	if cfg.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 64
		t.MaxIdleConnsPerHost = 64
		cfg.Client = &http.Client{Transport: t}
	}
	return &HTTPSink{cfg: cfg, target: u.String()}, nil
}

// Send posts ev and returns once the target answered 2xx.
func (s *HTTPSink) Send(ctx context.Context, ev *event.Event) error {
	req, err := HTTPRequest(ctx, s.target, ev, s.cfg.Structured)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	for k, vs := range s.cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	// The delivery's own trace context, if traced (the event's, as
	// ce-traceparent, may be older: the command that wrote it).
	tracing.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", s.target, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	_ = resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = &StatusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	if retryableStatus(resp.StatusCode) {
		return fmt.Errorf("post %s: %w", s.target, err)
	}
	return fmt.Errorf("post %s: %w: %w", s.target, ErrRejected, err)
}

// StatusError is an HTTP sink's answer other than 2xx.
type StatusError struct {
	Code int
	Body string // the start of the answer, for the dead-letter reason
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("status %d", e.Code)
	}
	return fmt.Sprintf("status %d: %s", e.Code, e.Body)
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return code >= 500
}

// HTTPRequest renders ev as a POST to target: binary mode (Ce-* headers,
// percent-encoded, Content-Type = datacontenttype, data as the body) or,
// if structured, the JSON event format.
func HTTPRequest(ctx context.Context, target string, ev *event.Event, structured bool) (*http.Request, error) {
	var body []byte
	h := make(http.Header, 8)
	if structured {
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		body = b
		h.Set("Content-Type", ContentTypeCloudEventsJSON)
	} else {
		err := cebinding.BinaryHeaders(ev, func(name, value string) { h[textproto.CanonicalMIMEHeaderKey(name)] = []string{value} },
			func(ct string) { h.Set("Content-Type", ct) })
		if err != nil {
			return nil, err
		}
		body = ev.Data()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = h
	return req, nil
}
