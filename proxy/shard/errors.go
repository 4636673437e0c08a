package shard

import "errors"

// ErrNoOwner reports a command whose shard found no serving owner within
// Config.RouteTimeout. Nothing ran: the client may retry.
var ErrNoOwner = errors.New("no sidecar serves the entity's shard")
