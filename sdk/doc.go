// Package sdk is the Go support library for writing CloudState user functions: the gRPC server
// that a jetstate sidecar (or any proxy speaking the CloudState protocol 0.2) calls to run
// event-sourced entities and value entities.
//
// # Writing a user function
//
// A user function declares its entities' gRPC services in .proto files, generates their Go
// types with protoc-gen-go (the SDK needs the types and descriptors, not gRPC stubs), and writes
// handlers for the services' methods:
//
//	cart := sdk.NewEventSourced(sdk.EventSourcedConfig{
//		ServiceName:   "com.example.shoppingcart.ShoppingCart",
//		PersistenceID: "shopping-cart",
//	}, newCart)
//	sdk.HandleCommand(cart, "AddItem", (*Cart).AddItem)
//	sdk.HandleEvent(cart, (*Cart).ItemAdded)
//	sdk.HandleSnapshot(cart, (*Cart).Snapshot, (*Cart).Restore)
//	srv, err := sdk.New(sdk.Config{}, cart)
//	...
//	err = srv.ListenAndServe(ctx) // HOST:PORT, default 127.0.0.1:8080
//
// New checks every handler against the service's descriptor (method names, input and output
// types) and reports all problems at once. The services must be in the Go protobuf registry,
// which is the case once their generated package is imported.
//
// # What the proxy sees
//
// Discovery answers with the entities (entity type, service name, persistence id, passivation
// timeout), ServiceInfo (protocol 0.2, support library "jetstate-go-sdk") and a
// FileDescriptorSet built from the registry: the services' files, the files of the persisted
// types, and every file they import, transitively. Errors the proxy reports through
// reportError are logged and passed to Config.OnReportError.
//
// Payloads are Any values with type URLs type.googleapis.com/<message full name>. Command
// payloads are decoded with the Go types registered in protoregistry.GlobalTypes; a payload of
// an unknown type or of another type than the handler takes is refused.
//
// # Entity streams
//
// The proxy opens one stream per entity activation and sends one command at a time; the SDK
// handles it on that stream's goroutine, so the handlers of one entity never run concurrently
// and need no locking. Command ids are echoed in replies. When the proxy half-closes a stream
// (passivation), the SDK ends it.
//
// Event sourced: the state comes from newState, the snapshot in init (if any, through the
// HandleSnapshot restore function) and the replayed events, applied in order. A command
// handler's Emit applies the event immediately; the reply carries the command's events in
// order and, when the sequence number crossed a multiple of SnapshotEvery, a snapshot of the
// state after all of them.
//
// Value entities: the state comes from init; UpdateState and DeleteState change it, and the
// reply carries the last change of the command.
//
// A command that fails (Fail, or an error returned by the handler) is answered with a Failure
// whose description is sent to the client; its events, state changes, side effects and forward
// are dropped. If an event-sourced command had already applied events to the state, the Failure
// asks the proxy to restart the entity (restart=true): the state is then stale, so the SDK
// refuses further commands on that stream until the proxy reopens it and replays the journal.
//
// Protocol-level problems are answered with a stream-level Failure, after which the SDK ends
// the stream and the proxy stops the entity: an unknown command name, a payload that cannot be
// decoded into the handler's input type, a handler that panics (the panic is recovered and
// logged with its stack; the server goes on serving other entities), a snapshot or journal
// event that cannot be restored, or messages out of protocol order.
//
// The SDK never imports the proxy.
package sdk
