// Package model is what the sidecar knows about its user function:
// Discover asks the function for its entities (ProxyInfo -> EntitySpec,
// retried while the function is not up), BuildModel validates the answer
// and builds an immutable Model of its services and methods, their entity
// types, entity key fields and (cloudstate.eventing) options. Options are
// read from the descriptors' wire form, so unregistered extensions work.
//
// The package talks to the user function only for discovery and knows
// nothing of NATS, ingress protocols or entity runtimes; it imports streams
// only for the limits of entity keys (streams.ErrInvalidKey).
package model
