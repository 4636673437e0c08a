// Package streamstest runs real nats-server instances with JetStream inside
// the test process: a single server on a temporary store, and a cluster of
// servers on loopback whose nodes can be stopped and restarted on their own
// store directories.
//
// Every JetStream test in jetstate uses these helpers instead of a fake
// store. Servers listen on random loopback ports, keep their data in
// t.TempDir(), and are shut down by t.Cleanup, so tests may run in parallel.
package streamstest
