// Package load measures a sidecar's load as the autoscaler sees it (the
// reference proxy's AutoscalerMetrics): the time-weighted average
// concurrency of client requests at the ingress, of commands in the user
// function and of operations on the store, and publishes it every second
// on <prefix>_load.<service> (protocol jetstate.load) for the operator.
//
// A command is in the function from when it is sent until its reply
// arrives, then in the store while its state change is stored (Storing),
// so the two never overlap. Stats is safe for concurrent use.
package load
