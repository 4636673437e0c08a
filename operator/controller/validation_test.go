package controller_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// TestValidation checks that the API server itself refuses invalid specs
// (the CRDs' OpenAPI schemas and CEL rules), and accepts the valid base
// every case starts from.
func TestValidation(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	svc := func(name string, mut func(*v1alpha1.StatefulService)) client.Object {
		s := &v1alpha1.StatefulService{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.StatefulServiceSpec{
				Containers: []corev1.Container{{Name: "uf", Image: "cart:1"}},
				Store:      v1alpha1.StoreReference{Name: "nats"},
			},
		}
		mut(s)
		return s
	}
	store := func(name string, mut func(*v1alpha1.StatefulStore)) client.Object {
		s := &v1alpha1.StatefulStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.StatefulStoreSpec{URLs: []string{"nats://nats:4222"}},
		}
		mut(s)
		return s
	}
	proj := func(name string, mut func(*v1alpha1.Projection)) client.Object {
		p := &v1alpha1.Projection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.ProjectionSpec{
				Source: v1alpha1.ProjectionSource{Service: "cart"},
				Sink:   v1alpha1.ProjectionSink{NATS: &v1alpha1.NATSSink{Subject: "carts.events"}},
			},
		}
		mut(p)
		return p
	}
	valid := []client.Object{
		svc("ok-svc", func(*v1alpha1.StatefulService) {}),
		svc("ok-sn", func(s *v1alpha1.StatefulService) { s.Spec.ServiceName = "ok_sn" }),
		store("ok-store", func(*v1alpha1.StatefulStore) {}),
		proj("ok-nats", func(*v1alpha1.Projection) {}),
		proj("ok-template", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts.{type}.{key}.{event}" }),
		proj("ok-uri", func(p *v1alpha1.Projection) {
			p.Spec.Sink = v1alpha1.ProjectionSink{URI: "http://readmodel.default.svc/events"}
		}),
		proj("ok-ref", func(p *v1alpha1.Projection) {
			p.Spec.Sink = v1alpha1.ProjectionSink{Ref: &v1alpha1.SinkReference{APIVersion: "eventing.knative.dev/v1", Kind: "Broker", Name: "default"}}
		}),
	}
	for _, o := range valid {
		if err := c.Create(t.Context(), o); err != nil {
			t.Errorf("valid %T %s refused: %v", o, o.GetName(), err)
		}
	}

	invalid := map[string]client.Object{
		"negative replicas": svc("neg", func(s *v1alpha1.StatefulService) { s.Spec.Replicas = ptr.To[int32](-1) }),
		"no containers":     svc("noc", func(s *v1alpha1.StatefulService) { s.Spec.Containers = nil }),
		"store ref shape":   svc("badref", func(s *v1alpha1.StatefulService) { s.Spec.Store.Name = "Not_A/Name" }),
		"empty store ref":   svc("noref", func(s *v1alpha1.StatefulService) { s.Spec.Store.Name = "" }),
		"shards 0":          svc("shards", func(s *v1alpha1.StatefulService) { s.Spec.Entities.Shards = -1 }),
		"sidecar's name":    svc("jsname", func(s *v1alpha1.StatefulService) { s.Spec.Containers[0].Name = "jetstate" }),
		"same ports":        svc("ports", func(s *v1alpha1.StatefulService) { s.Spec.Port, s.Spec.UserFunctionPort = 8080, 8080 }),
		"bad duration": svc("dur", func(s *v1alpha1.StatefulService) {
			s.Spec.Entities.PassivationTimeout = &metav1.Duration{Duration: -1}
		}),
		"member TTL too short": svc("ttl", func(s *v1alpha1.StatefulService) {
			s.Spec.Entities.MemberTTL = &metav1.Duration{Duration: 100 * time.Millisecond}
		}),
		"dotted name without serviceName": svc("a.b", func(*v1alpha1.StatefulService) {}),
		// metadata.name names the Service too: a DNS-1035 label.
		"dotted name with serviceName": svc("a.c", func(s *v1alpha1.StatefulService) { s.Spec.ServiceName = "ac" }),
		"name starting with a digit":   svc("1cart", func(s *v1alpha1.StatefulService) { s.Spec.ServiceName = "cart1" }),
		"name of 64 characters": svc("a234567890123456789012345678901234567890123456789012345678901234", func(s *v1alpha1.StatefulService) {
			s.Spec.ServiceName = "long"
		}),
		"bad serviceName": svc("sn", func(s *v1alpha1.StatefulService) { s.Spec.ServiceName = "a.b" }),
		"deletion policy": svc("dp", func(s *v1alpha1.StatefulService) { s.Spec.DeletionPolicy = "Shred" }),
		"autoscaling min > max": svc("as", func(s *v1alpha1.StatefulService) {
			s.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, MinReplicas: 5, MaxReplicas: 2}
		}),
		// The sidecar's admin port listens in the same pod as its ingress
		// and the user function (default 9090 when spec.sidecar is unset).
		"admin port = ingress port": svc("adm1", func(s *v1alpha1.StatefulService) { s.Spec.Sidecar.AdminPort = 9000 }),
		"admin port = function port": svc("adm2", func(s *v1alpha1.StatefulService) {
			s.Spec.Sidecar.AdminPort, s.Spec.UserFunctionPort = 7000, 7000
		}),
		"ingress port = default admin port":  svc("adm3", func(s *v1alpha1.StatefulService) { s.Spec.Port = 9090 }),
		"function port = default admin port": svc("adm4", func(s *v1alpha1.StatefulService) { s.Spec.UserFunctionPort = 9090 }),
		// The autoscaler refuses these (Policy.Validate) tick after tick.
		"autoscaling rate factor 1": svc("asf", func(s *v1alpha1.StatefulService) {
			s.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, RequestRateThresholdFactor: ptr.To(resource.MustParse("1"))}
		}),
		"autoscaling function target 0": svc("asuf", func(s *v1alpha1.StatefulService) {
			s.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, TargetUserFunctionConcurrency: ptr.To(resource.MustParse("0"))}
		}),
		"autoscaling request target negative": svc("asrc", func(s *v1alpha1.StatefulService) {
			s.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, TargetRequestConcurrency: ptr.To(resource.MustParse("-5"))}
		}),
		"store without URLs": store("nourl", func(s *v1alpha1.StatefulStore) { s.Spec.URLs = nil }),
		"store http URL":     store("http", func(s *v1alpha1.StatefulStore) { s.Spec.URLs = []string{"http://nats:4222"} }),
		"store 2 replicas":   store("r2", func(s *v1alpha1.StatefulStore) { s.Spec.StreamReplicas = 2 }),
		"store storage":      store("disk", func(s *v1alpha1.StatefulStore) { s.Spec.Storage = "disk" }),
		"store credentials and nkey": store("both", func(s *v1alpha1.StatefulStore) {
			s.Spec.Credentials, s.Spec.NKey = &v1alpha1.SecretKeyReference{Name: "creds"}, &v1alpha1.SecretKeyReference{Name: "nkey"}
		}),
		"store durability":     store("dur", func(s *v1alpha1.StatefulStore) { s.Spec.Durability = "sometimes" }),
		"store prefix":         store("prefix", func(s *v1alpha1.StatefulStore) { s.Spec.Prefix = "a.b" }),
		"projection two sinks": proj("two", func(p *v1alpha1.Projection) { p.Spec.Sink.URI = "http://x" }),
		"projection no sink":   proj("none", func(p *v1alpha1.Projection) { p.Spec.Sink = v1alpha1.ProjectionSink{} }),
		"projection ftp sink":  proj("ftp", func(p *v1alpha1.Projection) { p.Spec.Sink = v1alpha1.ProjectionSink{URI: "ftp://x/y"} }),
		"projection wildcard":  proj("wild", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts.>" }),
		"projection ref no kind": proj("nokind", func(p *v1alpha1.Projection) {
			p.Spec.Sink = v1alpha1.ProjectionSink{Ref: &v1alpha1.SinkReference{APIVersion: "v1", Name: "x"}}
		}),
		// What `jetstate project` refuses at start (a projector that never
		// becomes ready).
		"projection empty subject token":     proj("tok", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts..events" }),
		"projection subject ends in a dot":   proj("dot", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts." }),
		"projection unknown placeholder":     proj("ph", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts.{user}" }),
		"projection unclosed placeholder":    proj("ph2", func(p *v1alpha1.Projection) { p.Spec.Sink.NATS.Subject = "carts.{type" }),
		"projection dead letter empty token": proj("dl", func(p *v1alpha1.Projection) { p.Spec.Delivery.DeadLetterSubject = ".dead" }),
		"projection entity type too long": proj("et", func(p *v1alpha1.Projection) {
			p.Spec.Source.EntityTypes = []string{strings.Repeat("t", 129)}
		}),
		"projection mode":      proj("mode", func(p *v1alpha1.Projection) { p.Spec.Delivery.Mode = "batched" }),
		"projection start":     proj("start", func(p *v1alpha1.Projection) { p.Spec.Delivery.Start = "yesterday" }),
		"projection no source": proj("nosrc", func(p *v1alpha1.Projection) { p.Spec.Source.Service = "" }),
		"projection long name": proj("a-projection-name-that-is-far-too-long-for-a-consumer-name", func(*v1alpha1.Projection) {}),
	}
	for name, o := range invalid {
		t.Run(name, func(t *testing.T) {
			err := c.Create(t.Context(), o)
			if !apierrors.IsInvalid(err) {
				t.Errorf("create: %v, want Invalid", err)
			}
		})
	}

	// Immutable once created: the shard count and the service name.
	var s v1alpha1.StatefulService
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ok-sn"}, &s); err != nil {
		t.Fatal(err)
	}
	oldStore := s.Spec.Store
	s.Spec.Entities.Shards = 7
	if err := c.Update(t.Context(), &s); !apierrors.IsInvalid(err) {
		t.Errorf("changing shards: %v, want Invalid", err)
	}
	s.Spec.Entities.Shards = 100
	s.Spec.Store.Name = "another"
	if err := c.Update(t.Context(), &s); !apierrors.IsInvalid(err) {
		t.Errorf("changing the store: %v, want Invalid", err)
	}
	s.Spec.Store = oldStore
	s.Spec.ServiceName = "renamed"
	if err := c.Update(t.Context(), &s); !apierrors.IsInvalid(err) {
		t.Errorf("changing serviceName: %v, want Invalid", err)
	}

	// Without spec.serviceName the service name is metadata.name: setting
	// one later (or removing it) renames the service just as well, unless
	// it names the same.
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ok-svc"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Spec.ServiceName = "renamed"
	if err := c.Update(t.Context(), &s); !apierrors.IsInvalid(err) {
		t.Errorf("setting serviceName: %v, want Invalid", err)
	}
	s.Spec.ServiceName = "ok-svc"
	if err := c.Update(t.Context(), &s); err != nil {
		t.Errorf("setting serviceName to the name in use: %v", err)
	}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ok-sn"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Spec.ServiceName = ""
	if err := c.Update(t.Context(), &s); !apierrors.IsInvalid(err) {
		t.Errorf("removing serviceName: %v, want Invalid", err)
	}

	// A store's prefix names every stream, bucket and subject of its
	// services, and JetStream cannot change a stream's storage: neither
	// may change. Its replicas may.
	var st v1alpha1.StatefulStore
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "ok-store"}, &st); err != nil {
		t.Fatal(err)
	}
	for what, mut := range map[string]func(*v1alpha1.StatefulStore){
		"prefix":  func(s *v1alpha1.StatefulStore) { s.Spec.Prefix = "other" },
		"storage": func(s *v1alpha1.StatefulStore) { s.Spec.Storage = "memory" },
	} {
		changed := st.DeepCopy()
		mut(changed)
		if err := c.Patch(t.Context(), changed, client.MergeFrom(&st)); !apierrors.IsInvalid(err) {
			t.Errorf("changing a store's %s: %v, want Invalid", what, err)
		}
	}
	changed := st.DeepCopy()
	changed.Spec.StreamReplicas = 3
	if err := c.Patch(t.Context(), changed, client.MergeFrom(&st)); err != nil {
		t.Errorf("changing a store's replicas: %v", err)
	}

	// Valid autoscaling targets and factor.
	ok := svc("ok-as", func(s *v1alpha1.StatefulService) {
		s.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, RequestRateThresholdFactor: ptr.To(resource.MustParse("2")),
			TargetUserFunctionConcurrency: ptr.To(resource.MustParse("500m")), TargetRequestConcurrency: ptr.To(resource.MustParse("20"))}
	})
	if err := c.Create(t.Context(), ok); err != nil {
		t.Errorf("valid autoscaling refused: %v", err)
	}
	// Quantities written as YAML integers.
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jetstate.io/v1alpha1", "kind": "StatefulService",
		"metadata": map[string]any{"namespace": ns, "name": "ok-as-int"},
		"spec": map[string]any{
			"containers": []any{map[string]any{"name": "uf", "image": "cart:1"}},
			"store":      map[string]any{"name": "nats"},
			"autoscaling": map[string]any{"enabled": true, "requestRateThresholdFactor": int64(2),
				"targetUserFunctionConcurrency": int64(3), "targetRequestConcurrency": int64(20)},
		},
	}}
	if err := c.Create(t.Context(), u); err != nil {
		t.Errorf("valid autoscaling with integers refused: %v", err)
	}
	u.SetName("bad-as-int")
	u.SetResourceVersion("")
	_ = unstructured.SetNestedField(u.Object, int64(1), "spec", "autoscaling", "requestRateThresholdFactor")
	if err := c.Create(t.Context(), u); !apierrors.IsInvalid(err) {
		t.Errorf("rate factor 1 as an integer: %v, want Invalid", err)
	}
}
