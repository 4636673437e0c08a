package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
)

func TestTooLarge(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"max payload", nats.ErrMaxPayload, true},
		{"wrapped max payload", fmt.Errorf("publish x: %w", nats.ErrMaxPayload), true},
		{"stream max message size", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}, true},
		{"wrapped stream max message size", fmt.Errorf("publish x: %w",
			&jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}), true},
		{"journal's own", fmt.Errorf("append x: %w", streams.ErrTooLarge), true},
		{"another API error", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false},
		{"timeout", context.DeadlineExceeded, false},
		{"nil", nil, false},
		{"other", errors.New("too large, says the text"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := streams.TooLarge(tc.err); got != tc.want {
				t.Errorf("TooLarge(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
