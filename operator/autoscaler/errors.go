package autoscaler

import "errors"

// ErrConflict reports a State write that lost a race: the stored State
// changed since it was read (another operator instance wrote it).
var ErrConflict = errors.New("autoscaler state changed concurrently")
