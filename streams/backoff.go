package streams

import (
	"time"

	"github.com/jetstate/jetstate/internal/backoff"
)

// Retry pacing for transient JetStream refusals.
const (
	backoffMin = 5 * time.Millisecond
	backoffMax = 500 * time.Millisecond
)

// newBackoff paces one retry loop over transient JetStream refusals.
func newBackoff() backoff.Backoff { return backoff.Backoff{Min: backoffMin, Max: backoffMax} }
