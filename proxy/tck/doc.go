// Package tck runs the CloudState TCK's proxy-facing behaviours against the
// jetstate sidecar as Go tests: a TCK model user function, an interceptor
// between sidecar and function that records every message in both
// directions, and tests that drive the sidecar as a client and assert the
// exact message sequences. As in the TCK, one user function serves the
// models of every entity kind (event sourced, value entity, action, CRDT)
// and one harness start (startTCK) runs the sidecar in front of it; only
// the eventing tests use a function of their own.
//
// Behaviours covered, by item of spec section 4.2:
//   - 1, 2: discovery (with all four supported entity types) and server
//     reflection (listing every model's services);
//   - 37-45: action, proxy tests;
//   - 65-69: value entity, proxy tests;
//   - 91-95: event sourced, proxy tests;
//   - 178-183: CRDT, proxy tests (state changes, forwards and side effects,
//     failures, streamed connection tracking, HTTP, passivation);
//   - 184-186: eventing, proxy tests (consume an event, forward a consumed
//     event, JSON events);
//   - CRDT model tests (section H), played directly against the CRDT model
//     so that the proxy tests rest on a known-good function: 96, 97, the
//     per-type scenarios of 98-161 the proxy tests rely on, 164 and
//     170-177.
//
// The package has no non-test code beyond this comment.
package tck
