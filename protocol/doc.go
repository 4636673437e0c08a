// Package protocol holds the CloudState protocol 0.2 .proto files that jetstate speaks to user
// functions, and, in subdirectories, the Go generated from them. Nothing here is edited by hand
// except the .proto files; `make generate` rewrites the rest.
//
// Layout (proto package -> Go package):
//
//	cloudstate/entity.proto             cloudstate               common messages, EntityDiscovery
//	cloudstate/entity_key.proto         cloudstate               field option entity_key (1080)
//	cloudstate/legacy_entity_key.proto  cloudstate               field option legacy_entity_key (50002)
//	cloudstate/eventing.proto           cloudstate               method option eventing (1081)
//	cloudstate/event_sourced.proto      cloudstate.eventsourced  protocol/cloudstate/eventsourced
//	cloudstate/value_entity.proto       cloudstate.valueentity   protocol/cloudstate/valueentity
//	cloudstate/crdt.proto               cloudstate.crdt          protocol/cloudstate/crdt
//	cloudstate/action.proto             cloudstate.action        protocol/cloudstate/action
//	google/api/{annotations,http,httpbody}.proto                 not generated, see below
//
// The import paths (cloudstate/entity.proto, ...) are those user functions compile against, so
// they must not move. Field numbers and names are the wire format; the tests in this directory
// pin the ones that must never drift.
//
// The google/api files are copies for imports only (HTTP transcoding options). Their Go types
// are google.golang.org/genproto/googleapis/api/annotations and .../httpbody; generating our own
// would register the same files twice and panic at init.
//
// This package itself has no Go API; import the generated packages.
package protocol
