package sdk

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// CrdtConfig describes a CRDT entity to the proxy. A zero field means the documented default.
type CrdtConfig struct {
	// ServiceName is the full name of the gRPC service the entity implements. Required. The Go
	// package generated from its .proto file must be linked in (imported).
	ServiceName string
	// PersistenceID names the entity type in the proxy's CRDT store: the CRDT of entity E is
	// kept under <PersistenceID>-<E>. Default: the service's full name, as go-support does.
	PersistenceID string
	// Passivation is how long an entity may stay idle before the proxy passivates it (closes its
	// stream); an open streamed command keeps it active. Default 0: the proxy's default. Sent
	// with millisecond resolution.
	Passivation time.Duration
}

// WriteConsistency is how many of the proxy's nodes must have a command's state change before
// the client gets the reply.
type WriteConsistency int32

// The write consistencies (spec section 1.6, CrdtWriteConsistency).
const (
	// WriteLocal: the local node; the change spreads to the others by gossip. The default.
	WriteLocal = WriteConsistency(pb.CrdtWriteConsistency_LOCAL)
	// WriteMajority: a majority of the nodes.
	WriteMajority = WriteConsistency(pb.CrdtWriteConsistency_MAJORITY)
	// WriteAll: every node.
	WriteAll = WriteConsistency(pb.CrdtWriteConsistency_ALL)
)

// Crdt is the definition of a CRDT entity. Its state is a CRDT value that the proxy replicates;
// beside it, every activation of an entity has an E of the user's own (for example a count of
// the local node's open connections), made by newEntity. Build it with NewCrdt, attach handlers
// with HandleCrdtCommand and HandleCrdtStreamed, then pass it to New. It must not be changed
// after New.
//
// The proxy opens one stream per entity and node. The SDK handles its messages one at a time on
// that stream's goroutine: commands, deltas from the proxy, cancellations of streamed commands,
// and the OnChange and OnCancel functions of open streamed commands, which outlive their
// command. Handlers of one entity therefore never run concurrently and need no locking.
type Crdt[E any] struct {
	cfg       CrdtConfig
	newEntity func(entityID string) E
	commands  map[string]crdtCommand[E]
	errs      []error
}

type crdtCommand[E any] struct {
	types  commandTypes
	decode func(*anypb.Any) (proto.Message, error)
	// handle runs the handler; sub is the subscription of a streamed command.
	handle func(e E, ctx *CrdtContext, in proto.Message) (out proto.Message, sub *crdtSub, err error)
}

// NewCrdt starts the definition of a CRDT entity. newEntity returns the user's object for the
// entity with the given id; it is called once per activation (stream).
func NewCrdt[E any](cfg CrdtConfig, newEntity func(entityID string) E) *Crdt[E] {
	c := &Crdt[E]{cfg: cfg, newEntity: newEntity, commands: map[string]crdtCommand[E]{}}
	if newEntity == nil {
		c.errs = append(c.errs, errors.New("nil newEntity function"))
	}
	return c
}

func (c *Crdt[E]) register(name string, cmd crdtCommand[E], nilHandler bool) {
	if _, dup := c.commands[name]; dup {
		c.errs = append(c.errs, fmt.Errorf("command handler %q registered twice", name))
		return
	}
	if nilHandler {
		c.errs = append(c.errs, fmt.Errorf("command handler %q is nil", name))
		return
	}
	c.commands[name] = cmd
}

// HandleCrdtCommand registers h as the handler of the unary service method name. Decoding,
// replies, failures and forwards are as for HandleCommand; in addition h may read and change the
// state through ctx. The reply carries the command's net change of the state, if any.
func HandleCrdtCommand[E any, In, Out proto.Message](c *Crdt[E], name string, h func(e E, ctx *CrdtContext, in In) (Out, error)) {
	c.register(name, crdtCommand[E]{
		types:  commandTypes{in: messageDescriptor[In](), out: messageDescriptor[Out](), shape: unary},
		decode: func(a *anypb.Any) (proto.Message, error) { return decodeAs[In](a) },
		handle: func(e E, ctx *CrdtContext, in proto.Message) (proto.Message, *crdtSub, error) {
			out, err := h(e, ctx, in.(In))
			return out, nil, err
		},
	}, h == nil)
}

// HandleCrdtStreamed registers h as the handler of the server-streaming service method name.
// h runs like a command handler; its result, unless nil, is the stream's first element, and it
// may subscribe to later changes of the state with ctx.OnChange and to the client's
// cancellation with ctx.OnCancel. The stream stays open until OnChange ends it, the client
// cancels it, or the entity's stream ends. If h fails, the stream ends with the failure.
func HandleCrdtStreamed[E any, In, Out proto.Message](c *Crdt[E], name string, h func(e E, ctx *CrdtStreamContext[Out], in In) (Out, error)) {
	c.register(name, crdtCommand[E]{
		types:  commandTypes{in: messageDescriptor[In](), out: messageDescriptor[Out](), shape: streamedOut},
		decode: func(a *anypb.Any) (proto.Message, error) { return decodeAs[In](a) },
		handle: func(e E, ctx *CrdtContext, in proto.Message) (proto.Message, *crdtSub, error) {
			sc := &CrdtStreamContext[Out]{CrdtContext: ctx}
			out, err := h(e, sc, in.(In))
			if isNil(out) {
				return nil, sc.sub(), err
			}
			return out, sc.sub(), err
		},
	}, h == nil)
}

func (c *Crdt[E]) definition() *entityDef {
	d := &entityDef{
		entityType:    entityTypeCrdt,
		serviceName:   c.cfg.ServiceName,
		persistenceID: c.cfg.PersistenceID,
		passivation:   c.cfg.Passivation,
		commands:      map[string]commandTypes{},
		shapes:        []shape{unary, streamedOut},
		errs:          c.errs,
		crdt:          c,
	}
	if d.persistenceID == "" {
		d.persistenceID = c.cfg.ServiceName
	}
	for name, cmd := range c.commands {
		d.commands[name] = cmd.types
	}
	return d
}

// crdtState is an entity's current value, shared by the contexts of its stream.
type crdtState struct {
	value CRDT
}

// CrdtContext is what a CRDT command handler (or an OnChange or OnCancel function) may do
// besides replying: read and change the state, choose the write consistency, fail, forward, add
// side effects. It is valid only during the call it is passed to and must not be used from other
// goroutines.
type CrdtContext struct {
	entityID    string
	commandID   int64
	commandName string
	st          *crdtState
	readOnly    string // why the state may not change, "" if it may
	deleted     bool
	consistency WriteConsistency
	effects     effects
}

// EntityID is the id of the entity.
func (c *CrdtContext) EntityID() string { return c.entityID }

// CommandID is the proxy's id of the command, unique within the entity's stream. In OnChange and
// OnCancel it is the id of the streamed command.
func (c *CrdtContext) CommandID() int64 { return c.commandID }

// CommandName is the name of the service method being handled.
func (c *CrdtContext) CommandName() string { return c.commandName }

// State is the entity's current value, or nil if it has none yet (none was set, or received
// from the proxy) or the command deleted it. Changes to it through its methods are the command's
// state changes.
func (c *CrdtContext) State() CRDT { return c.st.value }

// SetState gives the entity its state, which must be nil until then: the CRDT type of an entity
// does not change. The reply sends state's changes since it was created (a new counter at 0
// sends nothing; a new LWWRegister sends its value). Setting a state when there is one, after
// Delete in the same command, or a nil state fails the command.
func (c *CrdtContext) SetState(state CRDT) {
	switch {
	case c.effects.failed:
	case c.readOnly != "":
		c.effects.fail("SetState: " + c.readOnly)
	case state == nil:
		c.effects.fail("SetState: nil state; use Delete")
	case c.deleted:
		c.effects.fail("SetState: the command deleted the state")
	case c.st.value != nil:
		c.effects.fail(fmt.Sprintf("SetState: the entity already has a %s state", c.st.value.kind()))
	default:
		c.st.value = state
	}
}

// Delete deletes the entity's CRDT on every node of the proxy. After the reply the proxy ends
// the entity's stream, and later commands to the entity fail.
func (c *CrdtContext) Delete() {
	switch {
	case c.effects.failed:
	case c.readOnly != "":
		c.effects.fail("Delete: " + c.readOnly)
	default:
		c.deleted, c.st.value = true, nil
	}
}

// WriteConsistency sets the consistency of the command's state change (WriteLocal by default).
func (c *CrdtContext) WriteConsistency(w WriteConsistency) { c.consistency = w }

// Fail fails the command: the client gets description as the error, and the command's state
// changes, side effects and forward are dropped. Only the first failure counts.
func (c *CrdtContext) Fail(description string) { c.effects.fail(description) }

// Forward hands the command to service/command; see EventSourcedContext.Forward.
func (c *CrdtContext) Forward(service, command string, payload proto.Message) {
	c.effects.addForward(service, command, payload)
}

// SideEffect asks the proxy to call service/command after the state change is written; see
// EventSourcedContext.SideEffect.
func (c *CrdtContext) SideEffect(service, command string, payload proto.Message, synchronous bool) {
	c.effects.addSideEffect(service, command, payload, synchronous)
}

// GetOrSetState returns the entity's state as a T, first setting it to create() if the entity
// has none. It fails the command, and returns the zero T and false, if the state is of another
// type or the command may not set it.
func GetOrSetState[T CRDT](ctx *CrdtContext, create func() T) (T, bool) {
	var zero T
	if ctx.State() == nil {
		ctx.SetState(create())
	}
	if ctx.effects.failed {
		return zero, false
	}
	t, ok := ctx.State().(T)
	if !ok {
		ctx.Fail(fmt.Sprintf("the state is a %T, not a %T", ctx.State(), zero))
		return zero, false
	}
	return t, true
}

// CrdtStreamContext is the context of a streamed command's handler: a CrdtContext, plus the
// subscriptions that keep the stream going after the handler returns.
type CrdtStreamContext[Out proto.Message] struct {
	*CrdtContext
	onChange func(*CrdtContext) (Out, bool, error)
	onCancel func(*CrdtContext) error
}

// OnChange registers f to be called after every change of the entity's state once the handler
// has returned: the change of another command (not of this one), or a delta from the proxy. f
// may read the state but not change it; it may add side effects and forward. A non-nil out is
// sent to the client as the stream's next element; end ends the stream (after out, if any); an
// error or Fail ends it with that failure. A change without element, side effects or end sends
// nothing. Deleting the entity, locally or by the proxy, does not call f.
func (c *CrdtStreamContext[Out]) OnChange(f func(ctx *CrdtContext) (out Out, end bool, err error)) {
	c.onChange = f
}

// OnCancel registers f to be called when the client cancels the stream. f may change the state
// (for example withdraw a vote) and add side effects, which are sent in the proxy's
// CrdtStreamCancelledResponse; if it fails they are dropped and the failure is logged.
func (c *CrdtStreamContext[Out]) OnCancel(f func(ctx *CrdtContext) error) { c.onCancel = f }

// sub is the subscription the handler registered, type-erased.
func (c *CrdtStreamContext[Out]) sub() *crdtSub {
	s := &crdtSub{id: c.commandID, name: c.commandName, onCancel: c.onCancel}
	if f := c.onChange; f != nil {
		s.onChange = func(ctx *CrdtContext) (proto.Message, bool, error) {
			out, end, err := f(ctx)
			if isNil(out) {
				return nil, end, err
			}
			return out, end, err
		}
	}
	return s
}

// crdtSub is an open streamed command.
type crdtSub struct {
	id       int64
	name     string
	onChange func(*CrdtContext) (proto.Message, bool, error)
	onCancel func(*CrdtContext) error
}
