package streams

import "context"

// AppendWithID is Append with a chosen Nats-Msg-Id, so a test can replay
// the retry of an append whose acknowledgement was lost.
func AppendWithID(ctx context.Context, j *Journal, e Entity, expected Version, events []Event, msgID string) (Version, error) {
	return j.appendID(ctx, e, expected, events, msgID)
}
