package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestPprofFlag: profiles are served on the admin address only with -pprof
// (or JETSTATE_PPROF=true), and the admin handler still answers the rest.
func TestPprofFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default off", nil, nil, false},
		{"flag", []string{"-pprof"}, nil, true},
		{"environment", nil, map[string]string{"JETSTATE_PPROF": "true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseProxy(tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Pprof != tc.want {
				t.Fatalf("Pprof = %v, want %v", c.Pprof, tc.want)
			}
		})
	}

	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ready")
	})
	srv := httptest.NewServer(withPprof(admin))
	t.Cleanup(srv.Close)
	for path, want := range map[string]int{
		"/ready":                         http.StatusOK,
		"/debug/pprof/cmdline":           http.StatusOK,
		"/debug/pprof/goroutine?debug=1": http.StatusOK,
		"/nope":                          http.StatusNotFound,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
