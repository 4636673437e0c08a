package sdk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
)

// ValueEntityConfig describes a value entity to the proxy. A zero field means the documented
// default.
type ValueEntityConfig struct {
	// ServiceName is the full name of the gRPC service the entity implements. Required. The Go
	// package generated from its .proto file must be linked in (imported).
	ServiceName string
	// PersistenceID names the entity type in the value store: the proxy stores the state of
	// entity E under (PersistenceID, E). Default: the service's simple name.
	PersistenceID string
	// PassivationTimeout is how long an entity may stay idle before the proxy passivates it.
	// Default 0: the proxy's default. Sent with millisecond resolution.
	PassivationTimeout time.Duration
}

// ValueEntity is the definition of a value entity whose state is a St, a concrete message type
// such as *cartpb.Cart. Build it with NewValueEntity, attach command handlers with
// HandleValueCommand, then pass it to New. It must not be changed after New.
//
// For every activation of an entity the SDK loads the stored state that the proxy sends, then
// handles commands one at a time. A command's state changes are sent to the proxy with its
// reply, which stores them before answering the client.
type ValueEntity[St proto.Message] struct {
	cfg      ValueEntityConfig
	commands map[string]veCommand[St]
	errs     []error
}

type veCommand[St proto.Message] struct {
	types  commandTypes
	decode func(*anypb.Any) (proto.Message, error)
	handle func(*ValueEntityContext[St], proto.Message) (proto.Message, error)
}

// NewValueEntity starts the definition of a value entity whose state is a St.
func NewValueEntity[St proto.Message](cfg ValueEntityConfig) *ValueEntity[St] {
	e := &ValueEntity[St]{cfg: cfg, commands: map[string]veCommand[St]{}}
	if messageDescriptor[St]() == nil {
		e.errs = append(e.errs, errors.New("the state type must be a concrete message type"))
	}
	return e
}

// HandleValueCommand registers h as the handler of the service method name. Decoding, replies,
// failures and forwards are as for HandleCommand; in addition h may change the state through
// ctx.
func HandleValueCommand[St, In, Out proto.Message](e *ValueEntity[St], name string, h func(ctx *ValueEntityContext[St], in In) (Out, error)) {
	if _, dup := e.commands[name]; dup {
		e.errs = append(e.errs, fmt.Errorf("command handler %q registered twice", name))
		return
	}
	if h == nil {
		e.errs = append(e.errs, fmt.Errorf("command handler %q is nil", name))
		return
	}
	e.commands[name] = veCommand[St]{
		types:  commandTypes{in: messageDescriptor[In](), out: messageDescriptor[Out]()},
		decode: func(a *anypb.Any) (proto.Message, error) { return decodeAs[In](a) },
		handle: func(ctx *ValueEntityContext[St], in proto.Message) (proto.Message, error) {
			out, err := h(ctx, in.(In))
			return out, err
		},
	}
}

func (e *ValueEntity[St]) definition() *entityDef {
	d := &entityDef{
		entityType:    entityTypeValueEntity,
		serviceName:   e.cfg.ServiceName,
		persistenceID: e.cfg.PersistenceID,
		passivation:   e.cfg.PassivationTimeout,
		commands:      map[string]commandTypes{},
		errs:          e.errs,
		ve:            e,
	}
	if d.persistenceID == "" {
		d.persistenceID = defaultPersistenceID(e.cfg.ServiceName)
	}
	for name, c := range e.commands {
		d.commands[name] = c.types
	}
	if st := messageDescriptor[St](); st != nil {
		d.types = append(d.types, st)
	}
	return d
}

// ValueEntityContext is what a value-entity command handler may do besides replying: read and
// change the state, fail, forward, add side effects. It is valid only during the handler's call
// and must not be used from other goroutines.
type ValueEntityContext[St proto.Message] struct {
	entityID    string
	commandID   int64
	commandName string
	state       St
	has         bool
	action      *valueentity.ValueEntityAction
	effects     effects
}

// EntityID is the id of the entity handling the command.
func (c *ValueEntityContext[St]) EntityID() string { return c.entityID }

// CommandID is the proxy's id of the command, unique within the entity's stream.
func (c *ValueEntityContext[St]) CommandID() int64 { return c.commandID }

// CommandName is the name of the service method being handled.
func (c *ValueEntityContext[St]) CommandName() string { return c.commandName }

// State returns a copy of the state as the command has left it so far: the stored state, or the
// last UpdateState of this command. Without state (none stored, or DeleteState) it returns an
// empty message.
func (c *ValueEntityContext[St]) State() St {
	if !c.has {
		return newMessage[St]()
	}
	return proto.Clone(c.state).(St)
}

// HasState reports whether the entity has a state: a stored one not deleted by this command, or
// one set by UpdateState.
func (c *ValueEntityContext[St]) HasState() bool { return c.has }

// UpdateState replaces the state with a copy of state. If the command succeeds the reply carries
// the last change of the command (update or delete), which the proxy stores before the client
// gets the reply. A nil state fails the command; use DeleteState. After the command has failed,
// UpdateState does nothing.
func (c *ValueEntityContext[St]) UpdateState(state St) {
	if c.effects.failed {
		return
	}
	if isNil(state) {
		c.effects.fail("update state: nil state")
		return
	}
	a, err := marshalAny(state)
	if err != nil {
		c.effects.fail(fmt.Sprintf("update state: %v", err))
		return
	}
	c.state, c.has = proto.Clone(state).(St), true
	c.action = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Update{Update: &valueentity.ValueEntityUpdate{Value: a}}}
}

// DeleteState removes the state. If the command succeeds, the proxy deletes the stored state.
// After the command has failed, DeleteState does nothing.
func (c *ValueEntityContext[St]) DeleteState() {
	if c.effects.failed {
		return
	}
	var zero St
	c.state, c.has = zero, false
	c.action = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Delete{Delete: &valueentity.ValueEntityDelete{}}}
}

// Fail fails the command: the client gets description as the error, and the state changes,
// side effects and forward of the command are dropped. Only the first failure of a command
// counts.
func (c *ValueEntityContext[St]) Fail(description string) { c.effects.fail(description) }

// Forward hands the command to service/command; see EventSourcedContext.Forward.
func (c *ValueEntityContext[St]) Forward(service, command string, payload proto.Message) {
	c.effects.addForward(service, command, payload)
}

// SideEffect asks the proxy to call service/command after the state is stored; see
// EventSourcedContext.SideEffect.
func (c *ValueEntityContext[St]) SideEffect(service, command string, payload proto.Message, synchronous bool) {
	c.effects.addSideEffect(service, command, payload, synchronous)
}

// veRunner runs the stream of one activation of a value entity, after its init.
type veRunner interface {
	run(stream valueentity.ValueEntity_HandleServer, init *valueentity.ValueEntityInit, log *slog.Logger) error
}

func (e *ValueEntity[St]) run(stream valueentity.ValueEntity_HandleServer, init *valueentity.ValueEntityInit, log *slog.Logger) error {
	id := init.GetEntityId()
	fatal := func(commandID int64, err error) error {
		logPanic(log, err, "entity failed", slog.String(keyEntityID, id), slog.Int64(keyCommandID, commandID))
		return stream.Send(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Failure{
			Failure: &cloudstate.Failure{CommandId: commandID, Description: err.Error()},
		}})
	}
	var (
		state St
		has   bool
	)
	if v := init.GetState().GetValue(); v != nil {
		st, err := decodeAs[St](v)
		if err != nil {
			return fatal(0, fmt.Errorf("init state: %w", err))
		}
		state, has = st, true
	}
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil // the proxy passivated the entity
		}
		if err != nil {
			return err
		}
		switch m := in.GetMessage().(type) {
		case *valueentity.ValueEntityStreamIn_Command:
			cmd := m.Command
			ctx := &ValueEntityContext[St]{entityID: id, commandID: cmd.GetId(), commandName: cmd.GetName(), state: state, has: has}
			reply, err := e.command(ctx, cmd)
			if err != nil {
				return fatal(cmd.GetId(), err)
			}
			if !ctx.effects.failed && ctx.action != nil {
				state, has = ctx.state, ctx.has
			}
			if err := stream.Send(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Reply{Reply: reply}}); err != nil {
				return err
			}
		case *valueentity.ValueEntityStreamIn_Init:
			return fatal(0, errors.New("protocol error: second init on the stream"))
		default:
			return fatal(0, errors.New("protocol error: empty message"))
		}
	}
}

// command handles one command. An error is a protocol-level failure that ends the stream;
// failures of the command itself are in the reply.
func (e *ValueEntity[St]) command(ctx *ValueEntityContext[St], cmd *cloudstate.Command) (*valueentity.ValueEntityReply, error) {
	h, ok := e.commands[cmd.GetName()]
	if !ok {
		return nil, fmt.Errorf("unknown command %q for %s", cmd.GetName(), e.cfg.ServiceName)
	}
	in, err := h.decode(cmd.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}
	var action *cloudstate.ClientAction
	if err := protect(func() error {
		reply, err := h.handle(ctx, in)
		if err != nil {
			ctx.effects.fail(err.Error())
		}
		if ctx.effects.failed {
			return nil
		}
		if action, err = ctx.effects.clientAction(reply); err != nil {
			ctx.effects.fail(fmt.Sprintf("command %s: %v", cmd.GetName(), err))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}
	if ctx.effects.failed {
		return &valueentity.ValueEntityReply{CommandId: cmd.GetId(), ClientAction: failureAction(cmd.GetId(), ctx.effects.description, false)}, nil
	}
	return &valueentity.ValueEntityReply{
		CommandId:    cmd.GetId(),
		ClientAction: action,
		SideEffects:  ctx.effects.sideEffects,
		StateAction:  ctx.action,
	}, nil
}
