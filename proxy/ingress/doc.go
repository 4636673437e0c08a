// Package ingress serves a user function's services to clients on one
// port: a cleartext HTTP/2 connection whose first request is gRPC goes to
// a native gRPC server, anything else (HTTP/1, HTTP/2 with prior knowledge
// carrying JSON) to net/http, where connectrpc.com/vanguard
// transcodes HTTP/JSON (google.api.http rules, and POST /<service>/<method>
// for methods without one) and gRPC-Web into calls on the same gRPC
// server, so every protocol takes one path. Server streams over REST are
// served as server-sent events or newline-delimited JSON. gRPC health and
// reflection (from the discovered descriptors) are served beside.
//
// Every call goes to a Caller (the command router, package proxy) as the
// method's serialized request; its errors become a status through Status,
// the one mapping of the sidecar's errors to gRPC codes (and, through
// vanguard, HTTP statuses). The ingress is the boundary where failures are
// logged: one whose text would reveal internals reaches the client as a
// short message with a request id, and is logged under it. Requests are
// bounded in size (MaxRequestSize, checked before they are read) and in
// how long their message may take (RequestMessageTimeout). Admin serves
// the probes and metrics.
package ingress
