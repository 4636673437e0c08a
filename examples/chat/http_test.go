package chat_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// ndjson is a server stream read over HTTP/JSON, one message a line.
type ndjson struct {
	lines  *bufio.Reader
	cancel context.CancelFunc
}

// openStream opens the server stream at base+path; close cancels it, as a client going away.
func openStream(t *testing.T, method, url string) *ndjson {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("%s %s = %d %s", method, url, resp.StatusCode, b)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return &ndjson{lines: bufio.NewReader(resp.Body), cancel: cancel}
}

// next returns the stream's next message.
func (s *ndjson) next(t *testing.T) string {
	t.Helper()
	line, err := s.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("stream ended: %v (after %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func (s *ndjson) expect(t *testing.T, want string) {
	t.Helper()
	if got := s.next(t); got != want {
		t.Fatalf("stream sent %s, want %s", got, want)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// presenceOverHTTP checks Connect and Monitor through the HTTP rules at base: two
// connections of one user keep them online until the last is cancelled.
func presenceOverHTTP(t *testing.T, base string) {
	mon := openStream(t, "GET", base+"/presence/dave")
	mon.expect(t, `{"online":false}`)
	c1 := openStream(t, "POST", base+"/presence/dave/connect")
	c1.expect(t, `{}`)
	mon.expect(t, `{"online":true}`)
	c2 := openStream(t, "POST", base+"/presence/dave/connect")
	c2.expect(t, `{}`)
	c1.cancel() // dave is still connected through c2
	late := openStream(t, "GET", base+"/presence/dave")
	late.expect(t, `{"online":true}`)
	c2.cancel()
	mon.expect(t, `{"online":false}`)
	late.expect(t, `{"online":false}`)
}

func TestPresenceOverHTTP(t *testing.T) {
	presenceOverHTTP(t, startSystem(t).sidecarURL().String())
}

// TestFriendsOverHTTP checks Add, Remove, List and Watch through their HTTP rules.
func TestFriendsOverHTTP(t *testing.T) {
	base := startSystem(t).sidecarURL().String()
	watch := openStream(t, "GET", base+"/friends/erin/watch")
	watch.expect(t, `{"friends":[]}`)
	for _, c := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/friends/erin/add", `{"friend":"frank"}`, 200, `{}`},
		{"/friends/erin/add", `{"friend":"dave"}`, 200, `{}`},
		{"/friends/erin/add", `{"friend":"dave"}`, 200, `{}`}, // already a friend: no change
		{"/friends/erin/add", `{"friend":"erin"}`, 500, `erin cannot be their own friend`},
		{"/friends/erin/add", `{}`, 500, `a friend needs a name`},
		{"/friends/erin/remove", `{"friend":"frank"}`, 200, `{}`},
		{"/friends/erin/remove", `{"friend":"nobody"}`, 200, `{}`},
	} {
		if code, body := post(t, base+c.path, c.body); code != c.code || body != c.want {
			t.Fatalf("POST %s %s = %d %q, want %d %q", c.path, c.body, code, body, c.code, c.want)
		}
	}
	if code, body := get(t, base+"/friends/erin"); code != 200 || body != `{"friends":["dave"]}` {
		t.Fatalf("GET /friends/erin = %d %s", code, body)
	}
	// Every change is sent, unless the runtime merges changes that come close together: the
	// watch sends the states in order, ending with the last.
	states := []string{`{"friends":["frank"]}`, `{"friends":["dave","frank"]}`, `{"friends":["dave"]}`}
	for i := 0; i < len(states); {
		got := watch.next(t)
		j := slices.Index(states[i:], got)
		if j < 0 {
			t.Fatalf("watch sent %s, want one of %q", got, states[i:])
		}
		i += j + 1
	}
}
