// Package sdk is the Go support library for writing CloudState user functions: the gRPC server
// that a jetstate sidecar (or any proxy speaking the CloudState protocol 0.2) calls to run
// event-sourced entities, value entities, CRDT entities and actions.
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
// and need no locking. (For CRDT entities the proxy may send commands without awaiting replies;
// the SDK still handles them, and everything else on the stream, one at a time.) Command ids are echoed in replies. When the proxy half-closes a stream
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
// event that cannot be restored, a CRDT delta of another type than the state, or messages out
// of protocol order.
//
// # CRDT entities
//
// A CRDT entity's state is one of the eight CloudState CRDTs (GCounter, PNCounter, GSet, ORSet,
// LWWRegister, Flag, ORMap, Vote). The proxy holds the replicated CRDT; the user function holds
// only its current value, as a CRDT the handlers read and change through CrdtContext.State:
//
//	presence := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: "chat.Presence"}, newConnections)
//	sdk.HandleCrdtCommand(presence, "Status", (*connections).Status)
//	sdk.HandleCrdtStreamed(presence, "Connect", (*connections).Connect)
//
// What the proxy sees, per entity stream (one per entity and proxy node):
//   - init carries the current value as a delta (none when the entity has no state); deltas
//     the proxy sends later apply to the value. They are never echoes of the function's own
//     changes. A Vote adopts the proxy's tally (votes for, voters); its own vote changes the
//     tally by one locally until the next delta.
//   - Every reply carries at most one state action: update with the command's net change
//     relative to the value before it (an element removed and added again, a counter moved up
//     and back, a repeated vote give none; every LWWRegister write gives one, with its clock),
//     or delete. ORMap changes are removed keys, updated values (nested deltas) and added
//     entries with their whole values. The action goes with the write consistency the handler
//     chose: WriteLocal (the default), WriteMajority or WriteAll. Behind a jetstate sidecar,
//     LOCAL answers the client once the change is merged into that sidecar's state (stored and
//     replicated right after), MAJORITY once the stream has stored it (with R3 on a quorum of
//     NATS servers, so every replica and every later activation sees it, across restarts), ALL
//     once it is stored and every live sidecar replica with the entity active has merged it.
//     Past the sidecar's write timeout (5 s) the command fails with "Failed to update CRDT at
//     requested write consistency".
//   - Costs: the sidecar stores and replicates the entity's whole state on every change (its
//     elements plus one counter per sidecar replica), so keep CRDT values small (presence,
//     counters, sets of ids); a large collection belongs in an event-sourced or value entity.
//   - A failed command (Fail or an error) is answered with a failure client action and no state
//     action; its changes are undone, and its side effects and forward dropped.
//   - A streamed command (a server-streaming method, command.streamed) is answered with
//     streamed=true, its first element, if any, as the client action. After every later change
//     of the state (another command's, or a delta from the proxy) its OnChange function may send
//     a CrdtStreamedMessage with an element, side effects and end_stream. When the client
//     cancels, the proxy sends stream_cancelled; OnCancel may change the state and add side
//     effects, sent in the CrdtStreamCancelledResponse.
//   - A delete from the proxy is accepted without reply; the proxy then ends the stream, as it
//     does after a delete the function asked for, and on passivation (open streamed commands
//     keep an entity active). The SDK ends its side when the proxy half-closes.
//
// Set elements and map keys are Any values, equal when their type URLs and bytes are equal:
// use the primitive helpers (String, Int64, ...: p.cloudstate.io/<type>) or MarshalAny, which
// encode deterministically. Elements and keys are listed sorted: by type URL, primitive strings
// by text, others by bytes.
//
// # Actions
//
// An action is a stateless service whose methods may have any of the four gRPC shapes; the
// proxy calls handleUnary, handleStreamedIn, handleStreamedOut or handleStreamed of
// cloudstate.action.ActionProtocol by the method's streaming flags, and New checks each handler
// (HandleUnary, HandleStreamedIn, HandleStreamedOut, HandleStreamed) against them. Each call
// runs on its own goroutine. A response is a failure (Fail or an error; its side effects are
// kept, and a failure in a stream does not end it), else a forward, else a reply, else nothing;
// in server-streaming calls every send is one response with what the handler asked for since
// the previous one. Unknown services or commands, a call through the rpc of another shape,
// undecodable payloads and panics are answered with gRPC errors.
//
// The SDK never imports the proxy.
package sdk
