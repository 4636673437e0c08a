package streams

import "context"

// AppendWithID is Append with a chosen write id, so a test can replay
// the retry of an append whose acknowledgement was lost.
func AppendWithID(ctx context.Context, j *Journal, e Entity, expected Version, events []Event, writeID string) (Version, error) {
	return j.appendID(ctx, e, expected, events, writeID)
}
