package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
)

// Defaults of Config and of the listening address.
const (
	DefaultHost            = "127.0.0.1"
	DefaultPort            = "8080"
	DefaultShutdownTimeout = 10 * time.Second
)

// maxMessageSize is the largest message the server accepts, the proxy's own limit (12 MiB): an
// init carrying a large snapshot or state must get through.
const maxMessageSize = 12 << 20

// Config configures a Server. A zero field means the documented default.
type Config struct {
	// ServiceName is the user function's name, reported to the proxy in ServiceInfo. Default:
	// the service name of the first entity.
	ServiceName string
	// ServiceVersion is the user function's version, reported in ServiceInfo. Default: the main
	// module's version from the build information, or "0.0.0".
	ServiceVersion string
	// Addr is the address ListenAndServe listens on. Default: HOST:PORT from the environment,
	// each defaulting to DefaultHost and DefaultPort; the proxy connects to it.
	Addr string
	// Logger receives the errors the proxy reports (reportError), entity failures and panics.
	// Default: slog.Default(), so that they are seen.
	Logger *slog.Logger
	// OnReportError, if set, is called with the message of every error the proxy reports through
	// EntityDiscovery.reportError, after it is logged. It may be called concurrently.
	OnReportError func(message string)
	// ShutdownTimeout bounds how long Serve waits, once its context is cancelled, for the open
	// entity streams to end before it closes them. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative shutdown timeout %v", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// Server is a user function: it serves the CloudState protocol's EntityDiscovery, EventSourced,
// ValueEntity, Crdt and ActionProtocol services for its entities to one proxy. It is safe for
// concurrent use; every entity stream and action call is handled in its own goroutine.
type Server struct {
	cfg     Config
	log     *slog.Logger
	spec    *cloudstate.EntitySpec
	es      map[string]esRunner
	ve      map[string]veRunner
	crdt    map[string]crdtRunner
	actions map[string]*Action
}

// New checks the entities against their services' descriptors and returns a server for them,
// or every problem found, joined. Entities must not be changed afterwards.
func New(cfg Config, entities ...Entity) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	errs := []error{cfg.Validate()}
	if len(entities) == 0 {
		errs = append(errs, errors.New("no entities"))
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		es: map[string]esRunner{}, ve: map[string]veRunner{}, crdt: map[string]crdtRunner{}, actions: map[string]*Action{},
	}
	var defs []*entityDef
	seen := map[string]bool{}
	for i, e := range entities {
		if e == nil {
			errs = append(errs, fmt.Errorf("entity %d is nil", i))
			continue
		}
		d := e.definition()
		if err := d.check(); err != nil {
			errs = append(errs, fmt.Errorf("entity %d (%s): %w", i, d.serviceName, err))
			continue
		}
		if seen[d.serviceName] {
			errs = append(errs, fmt.Errorf("entity %d: service %s is already served by another entity", i, d.serviceName))
			continue
		}
		seen[d.serviceName] = true
		defs = append(defs, d)
		if d.es != nil {
			s.es[d.serviceName] = d.es
		}
		if d.ve != nil {
			s.ve[d.serviceName] = d.ve
		}
		if d.crdt != nil {
			s.crdt[d.serviceName] = d.crdt
		}
		if d.action != nil {
			s.actions[d.serviceName] = d.action
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	spec, err := buildSpec(cfg, defs)
	if err != nil {
		return nil, err
	}
	s.spec = spec
	return s, nil
}

// ListenAndServe listens on Config.Addr (by default HOST:PORT from the environment, or
// 127.0.0.1:8080) and serves until ctx is cancelled; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = envAddr()
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.log.Info("user function listening", slog.String(keyAddr, lis.Addr().String()))
	return s.Serve(ctx, lis)
}

// envAddr is HOST:PORT from the environment, with the defaults.
func envAddr() string {
	host, port := os.Getenv("HOST"), os.Getenv("PORT")
	if host == "" {
		host = DefaultHost
	}
	if port == "" {
		port = DefaultPort
	}
	return net.JoinHostPort(host, port)
}

// Serve serves gRPC (plaintext HTTP/2, as the proxy speaks it) on lis until ctx is cancelled or
// lis fails, and closes lis. After cancellation it stops accepting streams, waits up to
// Config.ShutdownTimeout for the open ones to end, closes the rest and returns nil. Otherwise
// it returns the listener's error.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	// WaitForHandlers: Serve returns only after every stream handler has returned.
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessageSize), grpc.WaitForHandlers(true))
	cloudstate.RegisterEntityDiscoveryServer(gs, discoveryService{s: s})
	eventsourced.RegisterEventSourcedServer(gs, esService{s: s})
	valueentity.RegisterValueEntityServer(gs, veService{s: s})
	crdt.RegisterCrdtServer(gs, crdtService{s: s})
	action.RegisterActionProtocolServer(gs, actionService{s: s})

	served := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-served:
			return
		case <-ctx.Done():
		}
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			gs.GracefulStop()
		}()
		timer := time.NewTimer(s.cfg.ShutdownTimeout)
		defer timer.Stop()
		select {
		case <-stopped:
		case <-timer.C:
			gs.Stop()
			<-stopped
		}
	})
	err := gs.Serve(lis)
	close(served)
	wg.Wait()
	gs.Stop() // Serve failed: end the streams it started.
	return err
}

// esService serves cloudstate.eventsourced.EventSourced: one stream per entity activation.
type esService struct {
	eventsourced.UnimplementedEventSourcedServer
	s *Server
}

func (h esService) Handle(stream eventsourced.EventSourced_HandleServer) error {
	return openStream(h.s, "event-sourced", h.s.es, stream.Recv, (*eventsourced.EventSourcedStreamIn).GetInit,
		func(f *cloudstate.Failure) error {
			return stream.Send(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Failure{Failure: f}})
		},
		func(r esRunner, init *eventsourced.EventSourcedInit, log *slog.Logger) error {
			return r.run(stream, init, log)
		})
}

// veService serves cloudstate.valueentity.ValueEntity: one stream per entity activation.
type veService struct {
	valueentity.UnimplementedValueEntityServer
	s *Server
}

func (h veService) Handle(stream valueentity.ValueEntity_HandleServer) error {
	return openStream(h.s, "value entity", h.s.ve, stream.Recv, (*valueentity.ValueEntityStreamIn).GetInit,
		func(f *cloudstate.Failure) error {
			return stream.Send(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Failure{Failure: f}})
		},
		func(r veRunner, init *valueentity.ValueEntityInit, log *slog.Logger) error {
			return r.run(stream, init, log)
		})
}

// crdtService serves cloudstate.crdt.Crdt: one stream per entity and proxy node.
type crdtService struct {
	crdt.UnimplementedCrdtServer
	s *Server
}

func (h crdtService) Handle(stream crdt.Crdt_HandleServer) error {
	return openStream(h.s, "CRDT", h.s.crdt, stream.Recv, (*crdt.CrdtStreamIn).GetInit,
		func(f *cloudstate.Failure) error {
			return stream.Send(&crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_Failure{Failure: f}})
		},
		func(r crdtRunner, init *crdt.CrdtInit, log *slog.Logger) error { return r.run(stream, init, log) })
}

// openStream is how every entity protocol's stream starts: its first
// message must be init, naming a service of that kind this function
// serves, whose runner then runs the stream; anything else is answered
// with a failure (the proxy's log says why) and ends the stream.
func openStream[In any, Init interface {
	comparable
	GetServiceName() string
}, R any](s *Server, kind string, runners map[string]R, recv func() (In, error), initOf func(In) Init,
	sendFailure func(*cloudstate.Failure) error, run func(R, Init, *slog.Logger) error) error {
	in, err := recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	fail := func(desc string) error {
		s.log.Error(kind+" stream refused", slog.String(keyErr, desc))
		return sendFailure(&cloudstate.Failure{Description: desc})
	}
	var none Init
	init := initOf(in)
	if init == none {
		return fail("protocol error: the first message of a stream must be init")
	}
	r, ok := runners[init.GetServiceName()]
	if !ok {
		return fail(fmt.Sprintf("unknown %s service %q", kind, init.GetServiceName()))
	}
	return run(r, init, s.log.With(slog.String(keyService, init.GetServiceName())))
}
