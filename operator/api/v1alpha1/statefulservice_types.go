package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what happens to a service's streams and buckets when
// its StatefulService is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionRetain keeps the journal, snapshots and values (the default):
	// recreating the StatefulService finds its entities again.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete removes the service's streams and buckets with it.
	DeletionDelete DeletionPolicy = "Delete"
)

// StatefulService is a user function deployed with the jetstate sidecar: a
// Deployment whose pods run the function's containers beside a `jetstate
// proxy` container, a Service for the sidecar's ingress port, and the
// streams and buckets of the service, provisioned on its StatefulStore.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=stsvc;jss,categories=jetstate
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name also names the Service: a DNS-1035 label (at most 63 lowercase letters, digits and '-', starting with a letter)"
// +kubebuilder:validation:XValidation:rule="(has(self.spec.serviceName) ? self.spec.serviceName : self.metadata.name) == (has(oldSelf.spec.serviceName) ? oldSelf.spec.serviceName : oldSelf.metadata.name)",message="the service name (spec.serviceName, default metadata.name) is immutable: setting or removing spec.serviceName would leave the data behind"
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.store.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type StatefulService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   StatefulServiceSpec   `json:"spec"`
	Status StatefulServiceStatus `json:"status,omitempty"`
}

// StatefulServiceSpec is what the user asks for.
//
// +kubebuilder:validation:XValidation:rule="self.port != self.userFunctionPort",message="port and userFunctionPort must differ: both listen in the same pod"
// +kubebuilder:validation:XValidation:rule="(has(self.sidecar) && has(self.sidecar.adminPort) ? self.sidecar.adminPort : 9090) != self.port && (has(self.sidecar) && has(self.sidecar.adminPort) ? self.sidecar.adminPort : 9090) != self.userFunctionPort",message="sidecar.adminPort (default 9090) must differ from port and userFunctionPort: all listen in the same pod"
// +kubebuilder:validation:XValidation:rule="self.containers.all(c, c.name != 'jetstate')",message="the container name jetstate is the sidecar's"
type StatefulServiceSpec struct {
	// Containers run the user function. The first one is the function the
	// sidecar talks to (given PORT = userFunctionPort unless it sets PORT
	// itself, and kept running until the sidecar has handed its shards
	// over); others run beside it. The name "jetstate" is the sidecar's.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	Containers []corev1.Container `json:"containers"`

	// UserFunctionPort is the port of the function's gRPC server on the
	// pod's loopback, where the sidecar reaches it.
	// +kubebuilder:default=8080
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	UserFunctionPort int32 `json:"userFunctionPort,omitempty"`

	// Port is the sidecar's ingress port (gRPC and HTTP/JSON), exposed by
	// the Service of the same name as the StatefulService.
	// +kubebuilder:default=9000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Replicas is the number of pods. The autoscaler (when enabled) and
	// `kubectl scale` write it through the scale subresource.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Store names the StatefulStore (same namespace) holding the service's
	// state. Immutable: another store would start the service empty and
	// leave its data behind (delete the service with the Retain policy and
	// create it again to move it on purpose).
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="store is immutable: another store would leave the service's data behind"
	Store StoreReference `json:"store"`

	// ServiceName is the jetstate service name: it names the streams and
	// buckets ("<prefix>_<serviceName>_journal", ...). Letters, digits,
	// '-' and '_'. Default: metadata.name.
	// It cannot change: the data would stay behind under the old name.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="serviceName is immutable"
	// +optional
	ServiceName string `json:"serviceName,omitempty"`

	// Entities are the settings of the service's entities.
	// +kubebuilder:default={}
	// +optional
	Entities EntitySettings `json:"entities,omitempty"`

	// Sidecar overrides the injected jetstate sidecar container.
	// +optional
	Sidecar SidecarSpec `json:"sidecar,omitempty"`

	// ServiceAccountName is the pods' service account.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// TerminationGracePeriodSeconds bounds a pod's shutdown. It must cover
	// the sidecar's drain (in-flight commands) and the handoff of its
	// shards to the other replicas, which together take up to 20 s; the
	// user function is kept running until the sidecar is done.
	// +kubebuilder:default=45
	// +kubebuilder:validation:Minimum=30
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`

	// Autoscaling, when enabled, lets the operator set replicas from the
	// load the sidecars report.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// DeletionPolicy says what happens to the service's streams and buckets
	// when the StatefulService is deleted: Retain (default) keeps them,
	// Delete removes them.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// StoreReference names a StatefulStore in the same namespace.
type StoreReference struct {
	// Name of the StatefulStore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// EntitySettings are the entity settings of a service.
type EntitySettings struct {
	// PassivationTimeout is the idle time after which an entity is
	// passivated, for entity types whose discovery answer names none.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	PassivationTimeout *metav1.Duration `json:"passivationTimeout,omitempty"`

	// CommandTimeout bounds how long the user function may take for one
	// command.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	CommandTimeout *metav1.Duration `json:"commandTimeout,omitempty"`

	// RouteTimeout bounds how long a command waits for its shard to have a
	// reachable owner (during a handoff or after a replica died).
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	RouteTimeout *metav1.Duration `json:"routeTimeout,omitempty"`

	// Shards is the number of shards entities hash to. It is fixed when
	// the service is first provisioned.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="shards is fixed once the service exists"
	// +optional
	Shards int32 `json:"shards,omitempty"`

	// MemberTTL is how long a sidecar that stopped heartbeating keeps its
	// shards (how fast a dead replica's entities move). At least 1s.
	// +kubebuilder:default="6s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="memberTTL must be at least 1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	MemberTTL *metav1.Duration `json:"memberTTL,omitempty"`
}

// SidecarSpec overrides the jetstate sidecar container.
type SidecarSpec struct {
	// Image of the sidecar; default: the operator's -sidecar-image.
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the sidecar image.
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Resources of the sidecar container. Default: requests 100m CPU and
	// 64Mi memory, limit 256Mi memory.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// AdminPort serves /ready, /alive and /metrics.
	// +kubebuilder:default=9090
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	AdminPort int32 `json:"adminPort,omitempty"`

	// LogLevel is the sidecar's log level.
	// +kubebuilder:validation:Enum=info;debug
	// +optional
	LogLevel string `json:"logLevel,omitempty"`
}

// AutoscalingSpec is the policy of the operator's autoscaler. It follows
// CloudState's design: scale up when user-function or request concurrency
// per pod exceeds its target, down when fewer pods would do, at most
// maxStep pods at a time; after a scale-up, hold for scaleUpStabilization
// (shards move and new pods warm up) unless the request rate jumps beyond
// requestRateThresholdFactor; after a scale-down hold for
// scaleDownStabilization; never decide during a rollout.
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
type AutoscalingSpec struct {
	// Enabled turns the autoscaler on for this service.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// MinReplicas is the fewest pods the autoscaler sets.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// MaxReplicas is the most pods the autoscaler sets.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxReplicas int32 `json:"maxReplicas,omitempty"`

	// TargetUserFunctionConcurrency is the average number of commands in
	// the user function per pod the autoscaler aims at.
	// +kubebuilder:default="1"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="targetUserFunctionConcurrency must be positive"
	// +optional
	TargetUserFunctionConcurrency *resource.Quantity `json:"targetUserFunctionConcurrency,omitempty"`

	// TargetRequestConcurrency is the average number of requests in the
	// sidecar per pod (minus the time spent waiting on the journal) the
	// autoscaler aims at.
	// +kubebuilder:default="50"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="targetRequestConcurrency must be positive"
	// +optional
	TargetRequestConcurrency *resource.Quantity `json:"targetRequestConcurrency,omitempty"`

	// ScaleUpStabilization is how long concurrency is ignored after a
	// scale-up, while shards move to the new pods and they warm up.
	// +kubebuilder:default="3m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	ScaleUpStabilization *metav1.Duration `json:"scaleUpStabilization,omitempty"`

	// ScaleDownStabilization is how long no decision is taken after a
	// scale-down.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	ScaleDownStabilization *metav1.Duration `json:"scaleDownStabilization,omitempty"`

	// RequestRateThresholdFactor: during the scale-up stabilization, a
	// request rate above the rate at the scale-up times this factor scales
	// up further.
	// +kubebuilder:default="1.5"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('1'))",message="requestRateThresholdFactor must exceed 1"
	// +optional
	RequestRateThresholdFactor *resource.Quantity `json:"requestRateThresholdFactor,omitempty"`

	// MaxStep caps how many pods one decision adds or removes.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxStep int32 `json:"maxStep,omitempty"`
}

// StatefulServiceStatus is what the operator observed.
type StatefulServiceStatus struct {
	// ObservedGeneration is the generation of the spec this status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas is the number of available pods (the scale subresource's
	// status).
	// +optional
	Replicas int32 `json:"replicas"`

	// Selector is the label selector of the service's pods, for the scale
	// subresource (HPA, kubectl scale).
	// +optional
	Selector string `json:"selector,omitempty"`

	// ServiceName is the jetstate service name in use (see spec.serviceName).
	// +optional
	ServiceName string `json:"serviceName,omitempty"`

	// Conditions: Ready (True when the streams are provisioned and every
	// replica runs the current pod template; otherwise False with a reason).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// StatefulServiceList is a list of StatefulServices.
//
// +kubebuilder:object:root=true
type StatefulServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StatefulService `json:"items"`
}
