// Package autoscaler sets the replica count of jetstate services from the
// load their sidecars report, following the CloudState reference
// autoscaler and aware of shard handoff. It knows nothing of Kubernetes:
// the operator gives it a Target that lists the autoscaled services and
// sets their scale.
//
// Data flow: every sidecar publishes a load report each second on
// <prefix>_load.<service> (package proxy, protocol jetstate.load). An
// Aggregator subscribed to <prefix>_load.* keeps per-service, per-member
// sliding windows and summarises them (per-replica time-weighted
// concurrencies over the concurrency window, total request rate over the
// request-rate window, which members are live). A Runner, every tick (2 s),
// asks the Target for the services, summarises each one's load, runs
// Policy.Decide on the service's State and applies the Decision through
// Target.Scale with a reason. Decide is a pure function: the same State and
// Observation give the same result.
//
// State machine (State.Phase): Stable decides; a scale-up enters ScalingUp,
// which for ScaleUpStabilization ignores concurrency (it spikes while shards
// move to the new sidecars and these warm up) and scales further only if
// the request rate jumps beyond RequestRateThresholdFactor; a scale-down
// enters ScalingDown, which decides nothing for ScaleDownStabilization; a
// rollout (Service.RollingOut) enters Upgrading, which decides nothing
// until it ends. Leaving a stabilization keeps only the last request-rate
// window of metrics; leaving Upgrading drops all from before.
//
// The State of each service is kept in a JetStream KV bucket
// (<prefix>_autoscaler, Store), written with revision checks, so an
// operator that restarts, or a new leader, resumes where the last one
// stopped, deadlines included. Only one Runner should run per bucket (the
// operator's leader); a second one loses every write race and backs off.
//
// Goroutines: Aggregator.Run and Runner.Run block until their context
// ends; Summary, Decide and the Store are safe for concurrent use.
package autoscaler
