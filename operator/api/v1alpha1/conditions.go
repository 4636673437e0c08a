package v1alpha1

// ConditionReady is the one condition type every jetstate resource reports:
// True when the resource does what its spec asks, False with a reason (one
// of the Reason constants) and a message otherwise.
const ConditionReady = "Ready"

// Reasons of the Ready condition.
const (
	// ReasonReady: everything the spec asks for is in place.
	ReasonReady = "Ready"

	// ReasonInvalidSpec: the spec passed the API server's validation but
	// cannot be carried out (for example a name that is not a valid
	// jetstate service name).
	ReasonInvalidSpec = "InvalidSpec"

	// ReasonStoreNotFound: the StatefulStore the spec names does not exist
	// in the namespace.
	ReasonStoreNotFound = "StoreNotFound"

	// ReasonStoreNotReady: the StatefulStore exists but is not Ready (NATS
	// unreachable, JetStream missing or too old, credentials missing).
	ReasonStoreNotReady = "StoreNotReady"

	// ReasonProvisionFailed: creating or updating the service's streams and
	// buckets failed.
	ReasonProvisionFailed = "ProvisionFailed"

	// ReasonRolloutInProgress: the Deployment has not yet rolled out the
	// current pod template to every replica.
	ReasonRolloutInProgress = "RolloutInProgress"

	// ReasonConnectFailed: NATS could not be reached.
	ReasonConnectFailed = "ConnectFailed"

	// ReasonSecretNotFound: a secret (or a key in it) the spec names is
	// missing.
	ReasonSecretNotFound = "SecretNotFound"

	// ReasonJetStreamUnavailable: the server has no JetStream for the
	// account, or is older than jetstate supports.
	ReasonJetStreamUnavailable = "JetStreamUnavailable"

	// ReasonServiceNotFound: a Projection's source StatefulService does not
	// exist.
	ReasonServiceNotFound = "ServiceNotFound"

	// ReasonSinkNotResolved: a Projection's sink reference names an object
	// that does not exist or has no status.address.url yet.
	ReasonSinkNotResolved = "SinkNotResolved"

	// ReasonReconcileFailed: a call to the Kubernetes API failed; the
	// operator retries with back-off.
	ReasonReconcileFailed = "ReconcileFailed"

	// ReasonNameConflict: a Deployment or Service of the name the operator
	// would create exists and belongs to someone else; the operator leaves
	// it alone.
	ReasonNameConflict = "NameConflict"

	// ReasonDeleting: the resource is being deleted and its clean-up (the
	// deletion policy) has not finished.
	ReasonDeleting = "Deleting"
)
