package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatefulStore is a NATS JetStream system that holds the state of the
// StatefulServices naming it, and how their streams and buckets are
// provisioned there. The operator connects to it, checks that JetStream is
// enabled and new enough, and reports that in the Ready condition.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ststore;jst,categories=jetstate
// +kubebuilder:printcolumn:name="URLs",type=string,JSONPath=`.spec.urls[0]`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.streamReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.status.serverVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type StatefulStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   StatefulStoreSpec   `json:"spec"`
	Status StatefulStoreStatus `json:"status,omitempty"`
}

// StatefulStoreSpec says how to reach NATS and how to provision streams.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.credentials) && has(self.nkey))",message="credentials and nkey are two ways to authenticate: set one"
type StatefulStoreSpec struct {
	// URLs of the NATS servers (nats://, tls://, ws:// or wss://); the
	// client picks any and fails over to the others.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^(nats|tls|ws|wss)://[^\s,]+$`
	// +listType=atomic
	URLs []string `json:"urls"`

	// Credentials is a secret holding a NATS credentials file (user JWT and
	// nkey seed), as written by `nsc generate creds`.
	// +optional
	Credentials *SecretKeyReference `json:"credentials,omitempty"`

	// NKey is a secret holding an nkey seed file (a user authenticated by
	// its public nkey in the server's configuration).
	// +optional
	NKey *SecretKeyReference `json:"nkey,omitempty"`

	// TLS configures the connection's certificates. tls:// URLs with a
	// publicly trusted server certificate need none.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// StreamReplicas of every stream and bucket: 1 (a single server) or 3
	// (a Raft group surviving the loss of one server; needs a cluster of at
	// least 3).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Enum=1;3
	// +optional
	StreamReplicas int32 `json:"streamReplicas,omitempty"`

	// Storage of the streams: file (default) or memory (tests and demos:
	// lost when the servers restart). It cannot change.
	// +kubebuilder:default=file
	// +kubebuilder:validation:Enum=file;memory
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storage cannot change: JetStream cannot change an existing stream's storage"
	// +optional
	Storage string `json:"storage,omitempty"`

	// Durability says when a write is acknowledged: flush (default; once
	// in the OS buffers of a majority of the replicas, the server fsyncs
	// every 2 minutes) or always (after fsync; a server-wide setting,
	// `jetstream { sync_interval: always }`, that the stream records in its
	// metadata so the intent can be checked).
	// +kubebuilder:default=flush
	// +kubebuilder:validation:Enum=flush;always
	// +optional
	Durability string `json:"durability,omitempty"`

	// Prefix is the first part of every stream, bucket and subject name, so
	// several installations can share one NATS account. It cannot change.
	// +kubebuilder:default=jetstate
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="prefix is immutable: the services' data would stay behind under the old one"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// MaxMessageSize bounds one command's events, one value or one
	// snapshot, in bytes; at most the server's max_payload. Default 1 MiB.
	// +kubebuilder:validation:Minimum=1024
	// +optional
	MaxMessageSize int32 `json:"maxMessageSize,omitempty"`

	// CheckInterval is how often the operator checks the servers again.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	CheckInterval *metav1.Duration `json:"checkInterval,omitempty"`
}

// SecretKeyReference names a key in a secret of the same namespace.
type SecretKeyReference struct {
	// Name of the secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the secret. Default: "nats.creds" for credentials, "seed.nk"
	// for an nkey.
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// TLSSpec configures TLS to NATS.
type TLSSpec struct {
	// CA is a secret whose key (default "ca.crt") holds the PEM certificates
	// the servers' certificates are checked against.
	// +optional
	CA *SecretKeyReference `json:"ca,omitempty"`

	// ClientCertSecret names a kubernetes.io/tls secret (keys tls.crt and
	// tls.key) whose certificate the client presents (mutual TLS).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClientCertSecret string `json:"clientCertSecret,omitempty"`
}

// StatefulStoreStatus is what the operator found the last time it checked.
type StatefulStoreStatus struct {
	// ObservedGeneration is the generation of the spec this status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ServerVersion is the version of the server the operator reached.
	// +optional
	ServerVersion string `json:"serverVersion,omitempty"`

	// APILevel is the server's JetStream API level (jetstate needs >= 1,
	// nats-server 2.11).
	// +optional
	APILevel int `json:"apiLevel,omitempty"`

	// LastChecked is when the operator last connected.
	// +optional
	LastChecked *metav1.Time `json:"lastChecked,omitempty"`

	// Conditions: Ready (True when NATS answered with JetStream new
	// enough; otherwise False with a reason).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// StatefulStoreList is a list of StatefulStores.
//
// +kubebuilder:object:root=true
type StatefulStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StatefulStore `json:"items"`
}
