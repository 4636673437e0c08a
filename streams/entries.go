package streams

import (
	"fmt"
	"time"
)

// DecodeEntry decodes one journal message, the events of one command, as a
// consumer of the journal stream (a projection, a mirror reader) receives
// it: streamSeq and t are the message's stream sequence and append time
// from its JetStream metadata, data its body. The Records come back in
// order with their per-entity sequence numbers (dense, starting at the
// entry's first sequence) and Version.StreamSeq = streamSeq.
//
// Record data aliases data. A body jetstate did not write fails with
// ErrCorrupt. To learn which entity the message belongs to, pass its
// subject to Config.ParseSubject.
func DecodeEntry(streamSeq uint64, t time.Time, data []byte) ([]Record, error) {
	first, events, err := decodeEntry(data)
	if err != nil {
		return nil, fmt.Errorf("stream seq %d: %w", streamSeq, err)
	}
	recs := make([]Record, len(events))
	for i, ev := range events {
		recs[i] = Record{Event: ev, Version: Version{Seq: first + uint64(i), StreamSeq: streamSeq}, Time: t}
	}
	return recs, nil
}
