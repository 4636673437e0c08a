// Package web serves the chat's page: static files embedded in the binary, and the API paths
// the page calls (/presence/..., /friends/...) passed on to the sidecar's HTTP port, so that the
// browser talks to one origin. Streamed replies (NDJSON, server-sent events) are flushed to the
// browser as they arrive, and a browser that goes away cancels its call to the sidecar, which
// cancels the function's stream: closing the page disconnects its user.
package web
