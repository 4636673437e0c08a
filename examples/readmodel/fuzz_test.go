package readmodel_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetstate/jetstate/examples/readmodel"
)

// FuzzReceive posts arbitrary CloudEvents (binary-mode headers and a body)
// to the read model: it never panics and answers 200 or 400 (the database
// works, so never 500).
func FuzzReceive(f *testing.F) {
	f.Add("application/json", "x:1:0", readmodel.TypeItemAdded, "alice", `{"item":{"productId":"a","name":"A","quantity":2}}`)
	f.Add("application/json", "x:2:0", readmodel.TypeItemRemoved, "al%20ice", `{"productId":"a"}`)
	f.Add("application/protobuf", "x:3:0", readmodel.TypeItemAdded, "bob", "\n\x05\n\x01a\x18\x01")
	f.Add("application/cloudevents+json", "", "", "", `{"specversion":"1.0","id":"1","source":"/s","type":"`+readmodel.TypeItemAdded+`","subject":"c","data":{"item":{"productId":"p"}}}`)
	f.Add("text/plain", "%zz", "t", "", "")
	store, err := readmodel.Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	srv := readmodel.NewServer(store, nil)
	f.Fuzz(func(t *testing.T, contentType, id, typ, subject, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if id != "" || typ != "" {
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Source", "/jetstate/shoppingcart/shopping-cart")
			req.Header.Set("Ce-Id", id)
			req.Header.Set("Ce-Type", typ)
			req.Header.Set("Ce-Subject", subject)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
