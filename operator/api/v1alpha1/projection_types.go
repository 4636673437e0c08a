package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Projection delivers the events of a StatefulService's journals as
// CloudEvents 1.0 to a sink: a NATS subject, an HTTP URL, or an addressable
// object (a Knative Broker, Channel or Service...) whose status.address.url
// the operator resolves. The operator runs it as a Deployment of one
// `jetstate project` pod, replaced (never doubled) when the spec changes.
// Deleting a Projection stops the projector but keeps its position (the
// durable consumers on the journal stream): a Projection of the same name
// resumes where it stopped; `jetstate projection delete` forgets it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=jsproj,categories=jetstate
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 48 && !self.metadata.name.contains('.')",message="a projection's name is at most 48 characters without dots: it names its consumers"
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.source.service`
// +kubebuilder:printcolumn:name="Sink",type=string,JSONPath=`.status.sinkURI`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Projection struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ProjectionSpec   `json:"spec"`
	Status ProjectionStatus `json:"status,omitempty"`
}

// ProjectionSpec is what the user asks for.
type ProjectionSpec struct {
	// Source is the service whose journals are projected.
	Source ProjectionSource `json:"source"`

	// Sink receives the events.
	Sink ProjectionSink `json:"sink"`

	// Delivery settings.
	// +kubebuilder:default={}
	// +optional
	Delivery DeliverySpec `json:"delivery,omitempty"`

	// Image of the projector; default: the operator's -sidecar-image (the
	// jetstate binary runs both).
	// +optional
	Image string `json:"image,omitempty"`

	// Resources of the projector container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// ProjectionSource names the projected service.
type ProjectionSource struct {
	// Service is the StatefulService (same namespace) whose journals are
	// read; its store is where the projector connects.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Service string `json:"service"`

	// EntityTypes restricts the projection to these entity types
	// (persistence ids). Empty: every type of the service.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +listType=set
	// +optional
	EntityTypes []string `json:"entityTypes,omitempty"`
}

// ProjectionSink is exactly one of a NATS subject, a URI or a reference to
// an addressable object.
//
// +kubebuilder:validation:XValidation:rule="(has(self.nats) ? 1 : 0) + (has(self.uri) ? 1 : 0) + (has(self.ref) ? 1 : 0) == 1",message="exactly one of sink.nats, sink.uri and sink.ref must be set"
type ProjectionSink struct {
	// NATS publishes the events on a subject of the store's NATS.
	// +optional
	NATS *NATSSink `json:"nats,omitempty"`

	// URI posts the events to an HTTP endpoint.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URI string `json:"uri,omitempty"`

	// Ref names an addressable object in the same namespace (a Knative
	// Broker, Channel or Service, or anything with status.address.url);
	// events go to that URL, followed when it changes.
	// +optional
	Ref *SinkReference `json:"ref,omitempty"`
}

// NATSSink is a NATS subject.
type NATSSink struct {
	// Subject to publish on (no wildcards). It may hold the placeholders
	// {type}, {key} and {event}, replaced per event (escaped into subject
	// tokens).
	// +kubebuilder:validation:Pattern=`^[^\s*>]+$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('.') && !self.endsWith('.') && !self.contains('..')",message="a subject's tokens (between dots) must not be empty"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([^{}]|[{](type|key|event)[}])*$')",message="the placeholders are {type}, {key} and {event}"
	// +kubebuilder:validation:MaxLength=255
	Subject string `json:"subject"`

	// JetStream publishes with an acknowledgement from the stream that
	// captures the subject (the event id as Nats-Msg-Id, so the stream
	// drops redelivered duplicates); without it, events are plain core
	// NATS messages.
	// +optional
	JetStream bool `json:"jetstream,omitempty"`
}

// SinkReference names an addressable object.
type SinkReference struct {
	// APIVersion of the object, e.g. eventing.knative.dev/v1.
	// +kubebuilder:validation:MinLength=1
	APIVersion string `json:"apiVersion"`
	// Kind of the object, e.g. Broker.
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// DeliverySpec are the delivery settings of a projection.
type DeliverySpec struct {
	// Mode of HTTP delivery: binary (attributes in ce- headers, data as the
	// body; default) or structured (the whole event as JSON).
	// +kubebuilder:default=binary
	// +kubebuilder:validation:Enum=binary;structured
	// +optional
	Mode string `json:"mode,omitempty"`

	// MaxTries is how often one event is offered to the sink before it goes
	// to the dead-letter subject.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxTries int32 `json:"maxTries,omitempty"`

	// AckEach acknowledges every event on its own instead of one
	// acknowledgement per run of events the sink accepted: an event the
	// sink keeps failing then holds back only its own entity, at the price
	// of one more server message per event. It applies to generations made
	// from then on (a rebuild makes one).
	// +optional
	AckEach bool `json:"ackEach,omitempty"`

	// DeadLetterSubject receives the events the sink refused. Default
	// "<prefix>_deadletter.<service>.<projection>".
	// +kubebuilder:validation:Pattern=`^[^\s*>]+$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('.') && !self.endsWith('.') && !self.contains('..')",message="a subject's tokens (between dots) must not be empty"
	// +optional
	DeadLetterSubject string `json:"deadLetterSubject,omitempty"`

	// Workers bounds how many entities are sent at the same time (order is
	// kept per entity).
	// +kubebuilder:default=32
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Workers int32 `json:"workers,omitempty"`

	// Start says where a new projection begins: beginning (every event the
	// journals hold; default) or now (only events appended from now on).
	// A projection that already ran resumes where it stopped.
	// +kubebuilder:default=beginning
	// +kubebuilder:validation:Enum=beginning;now
	// +optional
	Start string `json:"start,omitempty"`

	// SendTimeout bounds one try of the sink.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	SendTimeout *metav1.Duration `json:"sendTimeout,omitempty"`
}

// ProjectionStatus is what the operator observed.
type ProjectionStatus struct {
	// ObservedGeneration is the generation of the spec this status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// SinkURI is the sink in use: nats:<subject>, jetstream:<subject> or the
	// (resolved) URL.
	// +optional
	SinkURI string `json:"sinkURI,omitempty"`

	// Conditions: Ready (True when the projector runs with a resolved
	// sink; otherwise False with a reason).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ProjectionList is a list of Projections.
//
// +kubebuilder:object:root=true
type ProjectionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Projection `json:"items"`
}
