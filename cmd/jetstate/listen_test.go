package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/controller"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestProxyListenAddresses: with the embedded server (one machine) the
// ingress and the admin endpoints listen on loopback only; with a NATS
// cluster on every interface, where a pod's clients and probes reach it;
// -host, JETSTATE_HOST and -admin choose.
func TestProxyListenAddresses(t *testing.T) {
	cluster := envMap{"NATS_URL": "nats://nats:4222"}
	for _, tc := range []struct {
		name          string
		args          []string
		env           envMap
		ingress, admn string
	}{
		{"embedded", nil, envMap{}, "127.0.0.1:9000", "127.0.0.1:9090"},
		{"embedded, ports from the environment", nil, envMap{"HTTP_PORT": "9100", "METRICS_PORT": "9190"}, "127.0.0.1:9100", "127.0.0.1:9190"},
		{"embedded, every interface", []string{"-host", "0.0.0.0", "-admin", ":9191"}, envMap{}, "0.0.0.0:9000", ":9191"},
		{"embedded, IPv6 loopback", []string{"-host", "::1"}, envMap{}, "[::1]:9000", "127.0.0.1:9090"},
		{"cluster", nil, cluster, ":9000", ":9090"},
		{"cluster, JETSTATE_HOST", nil, envMap{"NATS_URL": "nats://nats:4222", "JETSTATE_HOST": "10.1.2.3"}, "10.1.2.3:9000", ":9090"},
		{"cluster, -host wins", []string{"-host", "10.9.9.9"}, envMap{"NATS_URL": "nats://nats:4222", "JETSTATE_HOST": "10.1.2.3"}, "10.9.9.9:9000", ":9090"},
		{"cluster, admin on loopback", []string{"-admin", "127.0.0.1:9090"}, cluster, ":9000", "127.0.0.1:9090"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseProxy(tc.args, tc.env.get, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Proxy.Listen != tc.ingress || c.AdminListen != tc.admn {
				t.Fatalf("ingress %q, admin %q; want %q, %q", c.Proxy.Listen, c.AdminListen, tc.ingress, tc.admn)
			}
		})
	}
}

// TestOperatorSidecarListensOnPodIP runs the operator's controllers
// against a real API server (envtest) and parses the sidecar container of
// the Deployment they make as `jetstate proxy` would: the ingress and the
// admin endpoints (the probes' port) listen on every interface, on the
// container's ports.
func TestOperatorSidecarListensOnPodIP(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		msg := "KUBEBUILDER_ASSETS is not set; run: KUBEBUILDER_ASSETS=$(tools/envtest/assets.sh) go test -race ./cmd/jetstate/ (or make test)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	te := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "crds", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := te.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	// The operator's controllers, as jetstate-operator sets them up (its
	// Kubernetes libraries are this test's, never the binary's): names
	// unchecked, since controller-runtime allows one controller of a name
	// per process and -count may run the test again in this one.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := controller.Setup(ctx, mgr, controller.Config{SidecarImage: "jetstate:e2e"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	k, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	srv := streamstest.RunServer(t)
	for _, obj := range []client.Object{
		&v1alpha1.StatefulStore{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "nats"}, Spec: v1alpha1.StatefulStoreSpec{URLs: []string{srv.ClientURL()}}},
		&v1alpha1.StatefulService{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cart"}, Spec: v1alpha1.StatefulServiceSpec{
			Store: v1alpha1.StoreReference{Name: "nats"}, Containers: []corev1.Container{{Name: "cart", Image: "cart:1"}},
		}},
	} {
		if err := k.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	var dep appsv1.Deployment
	waitUntil(t, "the service's Deployment", func() bool {
		return k.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "cart"}, &dep) == nil
	})
	var sidecar *corev1.Container
	for i, c := range dep.Spec.Template.Spec.Containers {
		if len(c.Args) > 0 && c.Args[0] == "proxy" {
			sidecar = &dep.Spec.Template.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		t.Fatalf("no `jetstate proxy` container in %+v", dep.Spec.Template.Spec.Containers)
	}
	env := envMap{}
	for _, e := range sidecar.Env {
		env[e.Name] = e.Value
	}
	c, err := parseProxy(sidecar.Args[1:], env.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = strconv.Itoa(int(p.ContainerPort))
	}
	probe := sidecar.ReadinessProbe.HTTPGet.Port.String()
	for _, l := range []struct{ what, addr, port string }{
		{"ingress", c.Proxy.Listen, ports["ingress"]},
		{"admin", c.AdminListen, ports[probe]},
	} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil || host != "" || port != l.port || port == "" {
			t.Errorf("%s listens on %q; want every interface on the container's port %q (ports %v, probe port %q)", l.what, l.addr, l.port, ports, probe)
		}
	}
}
