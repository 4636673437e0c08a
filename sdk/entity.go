package sdk

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
)

// Entity is an entity definition that New can serve: an *EventSourced, a *ValueEntity, a *Crdt
// or an *Action. Its methods are unexported; build one with NewEventSourced, NewValueEntity,
// NewCrdt or NewAction.
type Entity interface {
	definition() *entityDef
}

// entityDef is what the server needs to know of an entity, whatever its kind: what discovery
// reports and what New checks.
type entityDef struct {
	entityType    string // the protocol service, e.g. cloudstate.eventsourced.EventSourced
	serviceName   string
	persistenceID string
	passivation   time.Duration
	commands      map[string]commandTypes
	// types are the other messages the entity persists (events, snapshots, state); their files
	// go into the discovery descriptor set.
	types []protoreflect.MessageDescriptor
	errs  []error
	// shapes are the method shapes the entity type allows; nil means unary only.
	shapes []shape
	// service is filled in by check.
	service protoreflect.ServiceDescriptor
	es      esRunner
	ve      veRunner
	crdt    crdtRunner
	action  *Action
}

// commandTypes are a command handler's input and output types, nil where the handler takes or
// returns any message (proto.Message), and the shape of method it handles.
type commandTypes struct {
	in, out protoreflect.MessageDescriptor
	shape   shape
}

// shape is a gRPC method's streaming shape.
type shape uint8

const (
	unary shape = iota
	streamedIn
	streamedOut
	streamed
)

func shapeOf(md protoreflect.MethodDescriptor) shape {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return streamed
	case md.IsStreamingClient():
		return streamedIn
	case md.IsStreamingServer():
		return streamedOut
	default:
		return unary
	}
}

func (s shape) String() string {
	switch s {
	case streamedIn:
		return "client-streaming"
	case streamedOut:
		return "server-streaming"
	case streamed:
		return "bidirectional-streaming"
	default:
		return "unary"
	}
}

// Entity type names: the protocol services (spec section 1.2).
var (
	entityTypeEventSourced = eventsourced.EventSourced_ServiceDesc.ServiceName
	entityTypeValueEntity  = valueentity.ValueEntity_ServiceDesc.ServiceName
	entityTypeCrdt         = crdt.Crdt_ServiceDesc.ServiceName
	entityTypeAction       = action.ActionProtocol_ServiceDesc.ServiceName
)

// check validates the definition against the service descriptor registered in the Go protobuf
// registry, fills in d.service and returns every problem found.
func (d *entityDef) check() error {
	errs := append([]error(nil), d.errs...)
	if d.serviceName == "" {
		return errors.Join(append(errs, errors.New("no service name"))...)
	}
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(d.serviceName))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("service %s is not registered; import the package generated from its .proto file", d.serviceName))...)
	}
	sd, ok := desc.(protoreflect.ServiceDescriptor)
	if !ok {
		return errors.Join(append(errs, fmt.Errorf("%s is not a service", d.serviceName))...)
	}
	d.service = sd
	if d.passivation < 0 {
		errs = append(errs, fmt.Errorf("negative passivation timeout %v", d.passivation))
	} else if d.passivation > 0 && d.passivation < time.Millisecond {
		errs = append(errs, fmt.Errorf("passivation timeout %v is under the protocol's 1ms resolution", d.passivation))
	}
	methods := sd.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		sh := shapeOf(md)
		switch {
		case d.shapes == nil && sh != unary:
			errs = append(errs, fmt.Errorf("method %s is streaming; %s entities only have unary methods", md.Name(), d.entityType))
		case d.shapes != nil && !slices.Contains(d.shapes, sh):
			errs = append(errs, fmt.Errorf("method %s is %s; %s entities have no such methods", md.Name(), sh, d.entityType))
			continue
		}
		ct, ok := d.commands[string(md.Name())]
		if !ok {
			errs = append(errs, fmt.Errorf("method %s has no command handler", md.Name()))
			continue
		}
		if d.shapes != nil && ct.shape != sh {
			errs = append(errs, fmt.Errorf("method %s is %s, its handler is for %s methods", md.Name(), sh, ct.shape))
		}
		if ct.in != nil && ct.in.FullName() != md.Input().FullName() {
			errs = append(errs, fmt.Errorf("method %s takes %s, its handler takes %s", md.Name(), md.Input().FullName(), ct.in.FullName()))
		}
		if ct.out != nil && ct.out.FullName() != md.Output().FullName() {
			errs = append(errs, fmt.Errorf("method %s returns %s, its handler returns %s", md.Name(), md.Output().FullName(), ct.out.FullName()))
		}
	}
	for name := range d.commands {
		if methods.ByName(protoreflect.Name(name)) == nil {
			errs = append(errs, fmt.Errorf("command handler %q: service %s has no such method", name, d.serviceName))
		}
	}
	return errors.Join(errs...)
}

// spec is the entity as discovery reports it.
func (d *entityDef) spec() *cloudstate.Entity {
	e := &cloudstate.Entity{EntityType: d.entityType, ServiceName: d.serviceName, PersistenceId: d.persistenceID}
	if d.passivation > 0 {
		e.PassivationStrategy = &cloudstate.EntityPassivationStrategy{Strategy: &cloudstate.EntityPassivationStrategy_Timeout{
			Timeout: &cloudstate.TimeoutPassivationStrategy{Timeout: d.passivation.Milliseconds()},
		}}
	}
	return e
}

// defaultPersistenceID is the persistence id of an entity whose config names none: the
// service's simple name (ShoppingCart for com.example.shoppingcart.ShoppingCart).
func defaultPersistenceID(serviceName string) string {
	return string(protoreflect.FullName(serviceName).Name())
}

// panicError is a recovered panic of user code.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// protect runs f and turns a panic into a *panicError.
func protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return f()
}

// logPanic logs the stack of err if it is a recovered panic.
func logPanic(log *slog.Logger, err error, msg string, attrs ...any) {
	var pe *panicError
	if errors.As(err, &pe) {
		log.Error(msg, append(attrs, slog.Any(keyPanic, pe.value), slog.String(keyStack, string(pe.stack)))...)
		return
	}
	log.Error(msg, append(attrs, slog.Any(keyErr, err))...)
}

// Log attribute keys.
const (
	keyService   = "service"
	keyEntityID  = "entity_id"
	keyCommand   = "command"
	keyCommandID = "command_id"
	keyErr       = "err"
	keyPanic     = "panic"
	keyStack     = "stack"
	keyAddr      = "addr"
)
