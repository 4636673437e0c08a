// Package cebinding is the CloudEvents protocol binding as jetstate writes
// and reads it, shared by projections' sinks, the dead-letter publisher
// and the sidecar's eventing: NATS messages in binary mode (ce-* headers,
// the data as the body) or structured mode (the JSON event format), and
// the binary-mode headers of HTTP.
//
// Header values are percent-encoded as the HTTP binding's section 3.1.3.2
// says (space, '"', '%' and every byte outside printable ASCII), so any
// attribute, an entity key with a line break or a '%' included, survives
// the trip; EventFromNATS decodes them. The values jetstate produces (ids,
// sources, protobuf names, ordinary keys) need no escape, so readers that
// do not decode still read them. The functions are safe for concurrent
// use; a NATSWriter renders into one message it reuses, for a publisher
// on the hot path (projections' NATS sink keeps a pool of them).
//
// projections re-exports NATSMsg, EventFromNATS and
// ContentTypeCloudEventsJSON, its public API; this package exists so that
// internal/deadletter, which projections imports, can use them too.
package cebinding
