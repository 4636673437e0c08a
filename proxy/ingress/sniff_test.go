package ingress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The connection sniffer decides as soon as it can. These tests set its
// timeout to an hour, so that a connection it waited out would be noticed
// (as a failsafe of a minute) rather than just slow.

// TestShortRequestIsAnsweredAtOnce sends an HTTP/1.0 request of 22 bytes,
// shorter than the HTTP/2 preface the sniffer compares the first bytes
// with: it is answered without waiting for more.
func TestShortRequestIsAnsweredAtOnce(t *testing.T) {
	addr, _ := serve(t, Config{sniffTimeout: time.Hour}, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute)) // a failsafe
	req := "OPTIONS / HTTP/1.0\r\n\r\n"
	if len(req) != 22 {
		t.Fatalf("request of %d bytes", len(req))
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("answered as %s", resp.Proto)
	}
}

// TestHTTP2PriorKnowledge: HTTP/JSON over cleartext HTTP/2 (prior
// knowledge, curl --http2-prior-knowledge) goes to the HTTP server, gRPC to
// the native gRPC server, each at once.
func TestHTTP2PriorKnowledge(t *testing.T) {
	addr, _ := serve(t, Config{sniffTimeout: time.Hour}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a failsafe
	defer cancel()

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/t.S/Echo", strings.NewReader(`{"n":"7"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != `{"n":"7"}` {
		t.Fatalf("POST /t.S/Echo over h2c = %s %d %q", resp.Proto, resp.StatusCode, body)
	}

	// grpc-go waits for the server's SETTINGS before it sends a request.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("gRPC health: %v", err)
	}
}
