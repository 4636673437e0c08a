package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// Labels and annotations the operator puts on what it creates.
const (
	// LabelService selects the pods of a StatefulService (value: its name).
	LabelService = "jetstate.io/stateful-service"
	// LabelProjection selects the projector pod of a Projection.
	LabelProjection = "jetstate.io/projection"
	// AnnotationConfigHash on a pod template is a hash of everything the
	// pods are configured with, including the store's secrets' versions: a
	// change rolls the pods.
	AnnotationConfigHash = "jetstate.io/config-hash"
)

// Names and defaults inside the pods.
const (
	sidecarName         = "jetstate"
	userFunctionName    = "user-function"
	ingressPortName     = "ingress"
	adminPortName       = "admin"
	defaultPort         = 9000
	defaultUFPort       = 8080
	defaultAdminPort    = 9090
	defaultGrace        = 45
	secretMountRoot     = "/etc/jetstate/nats"
	sidecarPreStopSleep = 5
	// handoffBudget is the sidecar's longest graceful stop: the ingress
	// drain (10 s) then the shard handoff (10 s). The user function is kept
	// up (its preStop sleeps) until the sidecar is done with it.
	handoffBudget = 20
)

// natsMounts is how a store's secrets appear in a pod: the volumes, the
// sidecar's mounts and the environment naming the files.
type natsMounts struct {
	volumes []corev1.Volume
	mounts  []corev1.VolumeMount
	env     []corev1.EnvVar
}

func (m *natsMounts) add(volume, secret string, items map[string]string, env map[string]string) {
	dir := path.Join(secretMountRoot, volume)
	var keys []corev1.KeyToPath
	for _, key := range sortedKeys(items) {
		keys = append(keys, corev1.KeyToPath{Key: key, Path: items[key]})
	}
	// Read-only for everyone: the files are root:root (the pod sets no
	// fsGroup) and the jetstate image runs as a non-root user; only the
	// sidecar (or projector) container mounts them.
	m.volumes = append(m.volumes, corev1.Volume{Name: "nats-" + volume, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, Items: keys, DefaultMode: ptr.To[int32](0o444)}}})
	m.mounts = append(m.mounts, corev1.VolumeMount{Name: "nats-" + volume, MountPath: dir, ReadOnly: true})
	for _, name := range sortedKeys(env) {
		m.env = append(m.env, corev1.EnvVar{Name: name, Value: path.Join(dir, env[name])})
	}
}

// storeMounts mounts the store's credentials, nkey and TLS secrets for the
// sidecar (or projector) and sets the environment `jetstate proxy` and
// `jetstate project` read: NATS_URL, JETSTATE_PREFIX, NATS_CREDS,
// NATS_NKEY, NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY.
func storeMounts(store *v1alpha1.StatefulStore) natsMounts {
	var m natsMounts
	m.env = append(m.env,
		corev1.EnvVar{Name: "NATS_URL", Value: joinURLs(store)},
		corev1.EnvVar{Name: "JETSTATE_PREFIX", Value: prefixOf(store)})
	s := store.Spec
	if ref := s.Credentials; ref != nil {
		m.add("creds", ref.Name, map[string]string{keyOr(ref, defaultCredsKey): "nats.creds"}, map[string]string{"NATS_CREDS": "nats.creds"})
	}
	if ref := s.NKey; ref != nil {
		m.add("nkey", ref.Name, map[string]string{keyOr(ref, defaultNKeyKey): "seed.nk"}, map[string]string{"NATS_NKEY": "seed.nk"})
	}
	if t := s.TLS; t != nil {
		if t.CA != nil {
			m.add("ca", t.CA.Name, map[string]string{keyOr(t.CA, defaultCAKey): "ca.crt"}, map[string]string{"NATS_TLS_CA": "ca.crt"})
		}
		if t.ClientCertSecret != "" {
			m.add("tls", t.ClientCertSecret, map[string]string{corev1.TLSCertKey: "tls.crt", corev1.TLSPrivateKeyKey: "tls.key"},
				map[string]string{"NATS_TLS_CERT": "tls.crt", "NATS_TLS_KEY": "tls.key"})
		}
	}
	return m
}

func prefixOf(store *v1alpha1.StatefulStore) string {
	if store.Spec.Prefix != "" {
		return store.Spec.Prefix
	}
	return "jetstate"
}

// storeSecrets lists the secrets a store names.
func storeSecrets(store *v1alpha1.StatefulStore) []string {
	var names []string
	s := store.Spec
	if s.Credentials != nil {
		names = append(names, s.Credentials.Name)
	}
	if s.NKey != nil {
		names = append(names, s.NKey.Name)
	}
	if s.TLS != nil && s.TLS.CA != nil {
		names = append(names, s.TLS.CA.Name)
	}
	if s.TLS != nil && s.TLS.ClientCertSecret != "" {
		names = append(names, s.TLS.ClientCertSecret)
	}
	return names
}

// serviceSettings are a StatefulService's spec with defaults applied (the
// API server applies the CRD's defaults; this covers objects written
// before a default existed).
type serviceSettings struct {
	name                    string // jetstate service name
	port, ufPort, adminPort int32
	replicas                int32
	grace                   int64
	passivation, cmd, route string
	shards                  int
	memberTTL               metav1.Duration
	image                   string
	pullPolicy              corev1.PullPolicy
	logLevel                string
	resources               corev1.ResourceRequirements
	serviceAccount          string
}

func settingsOf(svc *v1alpha1.StatefulService, cfg Config) serviceSettings {
	s := svc.Spec
	st := serviceSettings{
		name: serviceNameOf(svc), port: s.Port, ufPort: s.UserFunctionPort, adminPort: s.Sidecar.AdminPort,
		replicas: ptr.Deref(s.Replicas, 1), grace: ptr.Deref(s.TerminationGracePeriodSeconds, defaultGrace),
		shards: int(s.Entities.Shards), image: s.Sidecar.Image, pullPolicy: s.Sidecar.ImagePullPolicy,
		logLevel: s.Sidecar.LogLevel, serviceAccount: s.ServiceAccountName,
	}
	if st.port == 0 {
		st.port = defaultPort
	}
	if st.ufPort == 0 {
		st.ufPort = defaultUFPort
	}
	if st.adminPort == 0 {
		st.adminPort = defaultAdminPort
	}
	if st.image == "" {
		st.image = cfg.SidecarImage
	}
	if st.pullPolicy == "" {
		st.pullPolicy = cfg.SidecarPullPolicy
	}
	dur := func(d *metav1.Duration) string {
		if d == nil || d.Duration <= 0 {
			return ""
		}
		return d.Duration.String()
	}
	st.passivation, st.cmd, st.route = dur(s.Entities.PassivationTimeout), dur(s.Entities.CommandTimeout), dur(s.Entities.RouteTimeout)
	if s.Entities.MemberTTL != nil {
		st.memberTTL = *s.Entities.MemberTTL
	}
	if s.Sidecar.Resources != nil {
		st.resources = *s.Sidecar.Resources
	} else {
		st.resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
	}
	return st
}

// serviceNameOf is the jetstate service name: spec.serviceName or the
// object's name.
func serviceNameOf(svc *v1alpha1.StatefulService) string {
	if svc.Spec.ServiceName != "" {
		return svc.Spec.ServiceName
	}
	return svc.Name
}

func serviceLabels(svc *v1alpha1.StatefulService) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       svc.Name,
		"app.kubernetes.io/component":  "stateful-service",
		"app.kubernetes.io/managed-by": FieldManager,
		LabelService:                   svc.Name,
	}
}

func serviceSelector(svc *v1alpha1.StatefulService) map[string]string {
	return map[string]string{LabelService: svc.Name}
}

// selectorString is the pods' selector as the scale subresource wants it.
func selectorString(svc *v1alpha1.StatefulService) string {
	return LabelService + "=" + svc.Name
}

// sidecarContainer is the `jetstate proxy` container for svc on store.
func sidecarContainer(st serviceSettings, m natsMounts) corev1.Container {
	env := []corev1.EnvVar{
		{Name: "JETSTATE_SERVICE", Value: st.name},
		{Name: "HTTP_PORT", Value: strconv.Itoa(int(st.port))},
		{Name: "USER_FUNCTION_HOST", Value: "127.0.0.1"},
		{Name: "USER_FUNCTION_PORT", Value: strconv.Itoa(int(st.ufPort))},
		{Name: "METRICS_PORT", Value: strconv.Itoa(int(st.adminPort))},
		// As many threads running Go code as the sidecar's CPU request, rounded up: without
		// a CPU limit Go would take every CPU of the node, and a sidecar with idle threads
		// to wake pays for it in scheduler work (docs/bench: at 1,000 commands/s, one thread
		// cut the sidecar's CPU by a quarter). A request of 0 (none) leaves Go's default.
		{Name: "GOMAXPROCS", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: sidecarName, Resource: "requests.cpu", Divisor: resource.MustParse("1"),
		}}},
	}
	if st.passivation != "" {
		env = append(env, corev1.EnvVar{Name: "PASSIVATION_TIMEOUT", Value: st.passivation})
	}
	env = append(env, m.env...)
	args := []string{"proxy"}
	if st.cmd != "" {
		args = append(args, "-command-timeout", st.cmd)
	}
	if st.route != "" {
		args = append(args, "-route-timeout", st.route)
	}
	if st.logLevel == "debug" {
		args = append(args, "-v")
	}
	probe := func(p string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p, Port: intstr.FromString(adminPortName)}},
			PeriodSeconds:    period,
			TimeoutSeconds:   1,
			FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name:            sidecarName,
		Image:           st.image,
		ImagePullPolicy: st.pullPolicy,
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: ingressPortName, ContainerPort: st.port, Protocol: corev1.ProtocolTCP},
			{Name: adminPortName, ContainerPort: st.adminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: probe("/ready", 2, 3),
		LivenessProbe:  probe("/alive", 10, 5),
		// Let endpoints drop the pod before the sidecar stops taking
		// requests; it then drains and hands its shards over.
		Lifecycle:    &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: sidecarPreStopSleep}}},
		Resources:    st.resources,
		VolumeMounts: m.mounts,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// userContainers are the spec's containers with the first one named and
// given PORT, and kept alive until the sidecar finished its handoff.
func userContainers(svc *v1alpha1.StatefulService, st serviceSettings) []corev1.Container {
	cs := make([]corev1.Container, len(svc.Spec.Containers))
	for i := range svc.Spec.Containers {
		svc.Spec.Containers[i].DeepCopyInto(&cs[i])
	}
	uf := &cs[0]
	if uf.Name == "" {
		uf.Name = userFunctionName
	}
	hasPort := false
	for _, e := range uf.Env {
		hasPort = hasPort || e.Name == "PORT"
	}
	if !hasPort {
		uf.Env = append(uf.Env, corev1.EnvVar{Name: "PORT", Value: strconv.Itoa(int(st.ufPort))})
	}
	if uf.Lifecycle == nil {
		uf.Lifecycle = &corev1.Lifecycle{}
	}
	if uf.Lifecycle.PreStop == nil {
		// Stopped at the same time as the sidecar, the function would fail
		// the commands the sidecar is still draining.
		uf.Lifecycle.PreStop = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: sidecarPreStopSleep + handoffBudget}}
	}
	return cs
}

// desiredDeployment is the Deployment of svc on store. secretVersions are
// the resource versions of the store's secrets, hashed into the pod
// template so that rotating a secret rolls the pods.
func desiredDeployment(svc *v1alpha1.StatefulService, store *v1alpha1.StatefulStore, cfg Config, secretVersions []string) *appsv1.Deployment {
	st := settingsOf(svc, cfg)
	m := storeMounts(store)
	pod := corev1.PodSpec{
		Containers:                    append(userContainers(svc, st), sidecarContainer(st, m)),
		Volumes:                       m.volumes,
		ServiceAccountName:            st.serviceAccount,
		TerminationGracePeriodSeconds: ptr.To(st.grace),
	}
	labels := serviceLabels(svc)
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(st.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: serviceSelector(svc)},
			// One new pod joins (and takes its share of the shards) before
			// an old one leaves and hands its shards over.
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}
	d.Spec.Template.Annotations = map[string]string{AnnotationConfigHash: configHash(d.Spec.Template.Spec, secretVersions)}
	return d
}

// desiredService exposes the sidecars' ingress and admin ports. The target
// ports are numbers, not the sidecar's port names: a named target port
// resolves to the first container port of that name in the pod, which
// could be a user container's.
func desiredService(svc *v1alpha1.StatefulService, cfg Config) *corev1.Service {
	st := settingsOf(svc, cfg)
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: serviceLabels(svc)},
		Spec: corev1.ServiceSpec{
			Selector: serviceSelector(svc),
			Ports: []corev1.ServicePort{
				{Name: "grpc-http", Port: st.port, TargetPort: intstr.FromInt32(st.port), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: st.adminPort, TargetPort: intstr.FromInt32(st.adminPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// configHash is a short hash of a pod spec and the versions of the secrets
// it mounts.
func configHash(pod corev1.PodSpec, secretVersions []string) string {
	b, _ := json.Marshal(struct {
		Pod     corev1.PodSpec
		Secrets []string
	}{pod, secretVersions})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
