package chat_test

import (
	"net/url"
	"testing"

	"github.com/jetstate/jetstate/examples/chat"
	"github.com/jetstate/jetstate/internal/systemtest"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// system is the chat on loopback, all real: an in-process NATS server, the chat function and
// the sidecar.
type system struct {
	addr string // the sidecar's ingress: gRPC and HTTP/JSON
}

// sidecarConfig is the sidecar of the tests, serving CRDT entities.
func sidecarConfig(userFunction string) proxy.Config {
	return proxy.Config{
		Storage:      streams.Config{Service: "chat"},
		Provision:    &streams.StoreConfig{},
		UserFunction: userFunction,
		Listen:       "127.0.0.1:0",
		Enabled:      []string{model.CRDT},
	}
}

// requireCRDT returns the chat's entities.
func requireCRDT(t *testing.T) []sdk.Entity {
	t.Helper()
	entities, err := chat.Entities()
	if err != nil {
		t.Fatal(err)
	}
	return entities
}

func startSystem(t *testing.T) *system {
	t.Helper()
	entities := requireCRDT(t)
	js := streamstest.RunServer(t).JetStream(t)
	p := systemtest.RunSidecar(t, js, sidecarConfig(systemtest.ServeFunction(t, sdk.Config{ServiceName: "chat"}, entities...)))
	return &system{addr: p.Addr().String()}
}

func (s *system) sidecarURL() *url.URL { return &url.URL{Scheme: "http", Host: s.addr} }
