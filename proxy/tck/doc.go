// Package tck runs the CloudState TCK's proxy-facing behaviours against the
// jetstate sidecar as Go tests: a TCK model user function, an interceptor
// between sidecar and function that records every message in both
// directions, and tests that drive the sidecar as a client and assert the
// exact message sequences (spec section 4.2, items 1, 2, 37-45, 65-69, 91-95,
// 178-186). The CRDT tests (178-183, and TCK #1's supported entity types)
// skip while the sidecar refuses CRDT entities at discovery (requireCRDTs).
//
// The package has no non-test code beyond this comment.
package tck
