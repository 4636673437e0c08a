package sdk

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// DefaultSnapshotEvery is the number of events between snapshots when
// EventSourcedConfig.SnapshotEvery is 0.
const DefaultSnapshotEvery = 100

// EventSourcedConfig describes an event-sourced entity to the proxy. A zero field means the
// documented default.
type EventSourcedConfig struct {
	// ServiceName is the full name of the gRPC service the entity implements, for example
	// "com.example.shoppingcart.ShoppingCart". Required. The Go package generated from its
	// .proto file must be linked in (imported), so that the service is in the protobuf registry.
	ServiceName string
	// PersistenceID names the entity type in the journal: the proxy stores the events of entity
	// E under (PersistenceID, E). Default: the service's simple name ("ShoppingCart").
	PersistenceID string
	// PassivationTimeout is how long an entity may stay idle before the proxy passivates it
	// (closes its stream). Default 0: the proxy's default. Sent with millisecond resolution.
	PassivationTimeout time.Duration
	// SnapshotEvery: a command's reply carries a snapshot when, while its events are applied,
	// the entity's sequence number reaches a multiple of SnapshotEvery. 0 means
	// DefaultSnapshotEvery; a negative value means never. Snapshots also need HandleSnapshot.
	SnapshotEvery int
}

// EventSourced is the definition of an event-sourced entity whose per-entity state is an S
// (typically a pointer to a struct). Build it with NewEventSourced, then attach handlers with
// HandleCommand, HandleEvent and HandleSnapshot, then pass it to New. It must not be changed
// after New.
//
// For every activation of an entity (every stream the proxy opens) the SDK calls newState,
// restores the latest snapshot if there is one, applies the journal's events in order, then
// handles commands one at a time. Handlers of one entity are never called concurrently; handlers
// of different entities are.
type EventSourced[S any] struct {
	cfg          EventSourcedConfig
	newState     func(entityID string) S
	commands     map[string]esCommand[S]
	events       map[protoreflect.FullName]esEvent[S]
	snapshot     func(S) (proto.Message, error)
	restore      func(S, *anypb.Any) error
	snapshotType protoreflect.MessageDescriptor
	errs         []error
}

type esCommand[S any] struct {
	types  commandTypes
	decode func(*anypb.Any) (proto.Message, error)
	handle func(S, *EventSourcedContext, proto.Message) (proto.Message, error)
}

type esEvent[S any] struct {
	desc  protoreflect.MessageDescriptor
	apply func(S, proto.Message) error
}

// NewEventSourced starts the definition of an event-sourced entity. newState returns the empty
// state of the entity with the given id; it is called once per activation.
func NewEventSourced[S any](cfg EventSourcedConfig, newState func(entityID string) S) *EventSourced[S] {
	e := &EventSourced[S]{
		cfg:      cfg,
		newState: newState,
		commands: map[string]esCommand[S]{},
		events:   map[protoreflect.FullName]esEvent[S]{},
	}
	if newState == nil {
		e.errs = append(e.errs, errors.New("nil newState function"))
	}
	return e
}

// HandleCommand registers h as the handler of the service method name. The SDK decodes the
// command's payload into In (refusing other types) and replies with the returned Out, unless h
// failed (returned an error or called ctx.Fail) or forwarded (ctx.Forward; h then returns nil).
// A nil Out of a concrete type replies with the empty message of that type. In and Out may be
// proto.Message to accept or return any registered type. New checks the types against the
// method's.
//
// The error's text, like ctx.Fail's description, is sent to the client as the failure
// description.
func HandleCommand[S any, In, Out proto.Message](e *EventSourced[S], name string, h func(state S, ctx *EventSourcedContext, in In) (Out, error)) {
	if _, dup := e.commands[name]; dup {
		e.errs = append(e.errs, fmt.Errorf("command handler %q registered twice", name))
		return
	}
	if h == nil {
		e.errs = append(e.errs, fmt.Errorf("command handler %q is nil", name))
		return
	}
	e.commands[name] = esCommand[S]{
		types:  commandTypes{in: messageDescriptor[In](), out: messageDescriptor[Out]()},
		decode: func(a *anypb.Any) (proto.Message, error) { return decodeAs[In](a) },
		handle: func(s S, ctx *EventSourcedContext, in proto.Message) (proto.Message, error) {
			out, err := h(s, ctx, in.(In))
			return out, err
		},
	}
}

// HandleEvent registers h as the handler of events of type E. It is called for every event of
// that type: those replayed from the journal when the entity is activated, and those a command
// handler emits, at the moment it calls ctx.Emit. E must be a concrete message type. An error
// from h while replaying ends the stream with a failure; while handling a command it fails the
// command.
func HandleEvent[S any, E proto.Message](e *EventSourced[S], h func(state S, event E) error) {
	d := messageDescriptor[E]()
	if d == nil {
		e.errs = append(e.errs, errors.New("HandleEvent: the event type must be a concrete message type"))
		return
	}
	if _, dup := e.events[d.FullName()]; dup {
		e.errs = append(e.errs, fmt.Errorf("event handler for %s registered twice", d.FullName()))
		return
	}
	if h == nil {
		e.errs = append(e.errs, fmt.Errorf("event handler for %s is nil", d.FullName()))
		return
	}
	e.events[d.FullName()] = esEvent[S]{desc: d, apply: func(s S, m proto.Message) error {
		ev, ok := m.(E)
		if !ok {
			return fmt.Errorf("event of Go type %T, want %T", m, ev)
		}
		return h(s, ev)
	}}
}

// HandleSnapshot enables snapshots of type M. snapshot returns the state to save; it is called
// after the last event of a command whose events cross a multiple of SnapshotEvery, and a nil
// result skips that snapshot. restore loads a saved snapshot into a new state, before the events
// after it are replayed. M must be a concrete message type.
func HandleSnapshot[S any, M proto.Message](e *EventSourced[S], snapshot func(state S) (M, error), restore func(state S, snapshot M) error) {
	d := messageDescriptor[M]()
	switch {
	case d == nil:
		e.errs = append(e.errs, errors.New("HandleSnapshot: the snapshot type must be a concrete message type"))
		return
	case e.snapshot != nil:
		e.errs = append(e.errs, errors.New("HandleSnapshot called twice"))
		return
	case snapshot == nil || restore == nil:
		e.errs = append(e.errs, errors.New("HandleSnapshot: nil function"))
		return
	}
	e.snapshotType = d
	e.snapshot = func(s S) (proto.Message, error) {
		m, err := snapshot(s)
		return m, err
	}
	e.restore = func(s S, a *anypb.Any) error {
		m, err := decodeAs[M](a)
		if err != nil {
			return err
		}
		return restore(s, m)
	}
}

// snapshotEvery is the configured interval; 0 means never.
func (e *EventSourced[S]) snapshotEvery() int64 {
	switch n := e.cfg.SnapshotEvery; {
	case n == 0:
		return DefaultSnapshotEvery
	case n < 0:
		return 0
	default:
		return int64(n)
	}
}

func (e *EventSourced[S]) definition() *entityDef {
	d := &entityDef{
		entityType:    entityTypeEventSourced,
		serviceName:   e.cfg.ServiceName,
		persistenceID: e.cfg.PersistenceID,
		passivation:   e.cfg.PassivationTimeout,
		commands:      map[string]commandTypes{},
		errs:          e.errs,
		es:            e,
	}
	if d.persistenceID == "" {
		d.persistenceID = defaultPersistenceID(e.cfg.ServiceName)
	}
	for name, c := range e.commands {
		d.commands[name] = c.types
	}
	for _, ev := range e.events {
		d.types = append(d.types, ev.desc)
	}
	if e.snapshotType != nil {
		d.types = append(d.types, e.snapshotType)
	}
	return d
}

// EventSourcedContext is what an event-sourced command handler may do besides replying. It is
// valid only during the handler's call and must not be used from other goroutines.
type EventSourcedContext struct {
	entityID    string
	commandID   int64
	commandName string
	emit        func(proto.Message) error
	events      []*anypb.Any
	applied     int // events handed to an event handler, successfully or not
	effects     effects
}

// EntityID is the id of the entity handling the command.
func (c *EventSourcedContext) EntityID() string { return c.entityID }

// CommandID is the proxy's id of the command, unique within the entity's stream.
func (c *EventSourcedContext) CommandID() int64 { return c.commandID }

// CommandName is the name of the service method being handled.
func (c *EventSourcedContext) CommandName() string { return c.commandName }

// Emit applies event to the state at once (through its HandleEvent handler) and adds it to the
// events the proxy persists if the command succeeds. Events are persisted in the order they are
// emitted. If event has no handler, cannot be encoded or its handler fails, the command fails
// with that error as its description. After the command has failed, Emit does nothing.
func (c *EventSourcedContext) Emit(event proto.Message) {
	if c.effects.failed {
		return
	}
	if err := c.emit(event); err != nil {
		c.effects.fail(err.Error())
	}
}

// Fail fails the command: the client gets description as the error, and the events, side
// effects and forward of the command are dropped. If events were already applied to the state,
// the SDK asks the proxy to restart the entity (Failure.restart), which replays the journal
// into a fresh state. Only the first failure of a command counts; later calls do nothing.
func (c *EventSourcedContext) Fail(description string) { c.effects.fail(description) }

// Forward hands the command to service/command (a unary method of a service of this user
// function) with payload as its input; that command's reply becomes the client's reply. A
// forwarding handler returns a nil reply. Forwarding twice, to an unknown method or with a
// payload of the wrong type fails the command.
func (c *EventSourcedContext) Forward(service, command string, payload proto.Message) {
	c.effects.addForward(service, command, payload)
}

// SideEffect asks the proxy to call service/command with payload after the events are persisted
// and before the client gets its reply. A synchronous side effect is awaited (its failure fails
// the request); others are fire and forget. Side effects run in the order they are added and are
// dropped if the command fails.
func (c *EventSourcedContext) SideEffect(service, command string, payload proto.Message, synchronous bool) {
	c.effects.addSideEffect(service, command, payload, synchronous)
}
