package web

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
)

//go:embed static
var static embed.FS

// APIPrefixes are the paths the page calls on the sidecar: the HTTP rules of chat.proto.
var APIPrefixes = []string{"/presence/", "/friends/"}

// Handler serves the page at / and passes requests under APIPrefixes on to the sidecar at
// sidecar (its HTTP/JSON ingress, e.g. http://127.0.0.1:9000). A sidecar that cannot be reached
// is answered 502 and logged to log (nil: slog.Default()).
func Handler(sidecar *url.URL, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // static is embedded: it is always there
	}
	api := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(sidecar)
			r.SetXForwarded()
		},
		FlushInterval: -1, // every write of a stream reaches the browser at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the browser went away
			}
			log.WarnContext(r.Context(), "chat: sidecar unreachable", slog.String("path", r.URL.Path), slog.Any("err", err))
			http.Error(w, "the sidecar cannot be reached", http.StatusBadGateway)
		},
	}
	mux := http.NewServeMux()
	for _, p := range APIPrefixes {
		mux.Handle(p, api)
	}
	mux.Handle("/", http.FileServerFS(files))
	return mux
}
