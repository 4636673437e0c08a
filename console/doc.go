// Package console is `jetstate console`: a web UI over a jetstate
// installation's storage on NATS, for people. It shows the services under
// one prefix (entity types and their methods, live sidecars and the shards
// each owns, their load reports), an entity's event history with each
// event decoded as JSON (followed live), its snapshot and value state, the
// projections with their lag and dead letters, and the eventing
// subscriptions with their lag.
//
// It reads what the sidecars and projectors store and publish; it never
// talks to a sidecar or a user function. Event payloads are decoded with
// the descriptors the sidecars keep in each service's discovery bucket
// (streams.Discovery), and with Config.Descriptors for services whose
// sidecars did not store them.
//
// The console is read-only unless Config.AllowWrites: then a projection
// can be paused, resumed and rebuilt, with the operations of `jetstate
// projection` (projections.Projection's Pause, Resume and Reset). Pages are
// server-rendered html/template (so every value is escaped) with htmx,
// embedded with the templates and the style sheet: nothing is fetched from
// elsewhere. Cross-origin POSTs are refused (net/http's
// CrossOriginProtection), so another site cannot press the buttons.
package console
