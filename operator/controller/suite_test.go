package controller_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/controller"
)

// The control plane (kube-apiserver + etcd from KUBEBUILDER_ASSETS) and one
// manager running every reconciler are shared by the tests of this package;
// each test works in its own namespace.
var (
	envOnce sync.Once
	env     struct {
		testEnv *envtest.Environment
		client  client.Client
		scheme  *runtime.Scheme
		stop    context.CancelFunc
		done    chan struct{}
		err     error
		started time.Duration
	}
)

// testConfig is the operator's config in these tests.
var testConfig = controller.Config{
	SidecarImage:   "jetstate:test",
	ConnectTimeout: 2 * time.Second,
	NotReadyRetry:  500 * time.Millisecond,
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env.testEnv != nil {
		env.stop()
		<-env.done
		if err := env.testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "envtest stop:", err)
		}
	}
	os.Exit(code)
}

// k8s returns a client of the shared control plane, starting it on first
// use. Without KUBEBUILDER_ASSETS the test is skipped, or fails under CI.
func k8s(t *testing.T) client.Client {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		msg := "KUBEBUILDER_ASSETS is not set; run: KUBEBUILDER_ASSETS=$(tools/envtest/assets.sh) go test -race ./operator/... (or make test)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	envOnce.Do(startEnv)
	if env.err != nil {
		t.Fatalf("envtest: %v", env.err)
	}
	return env.client
}

func startEnv() {
	log := logr.Discard()
	if testing.Verbose() && os.Getenv("OPERATOR_TEST_LOG") != "" {
		log = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	}
	ctrl.SetLogger(log)
	scheme, err := controller.NewScheme()
	if err != nil {
		env.err = err
		return
	}
	env.scheme = scheme
	env.testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "crds", "bases")},
		CRDs:                  []*apiextensionsv1.CustomResourceDefinition{addressableCRD()},
		ErrorIfCRDPathMissing: true,
	}
	t0 := time.Now()
	cfg, err := env.testEnv.Start()
	if err != nil {
		env.err = err
		return
	}
	env.started = time.Since(t0)
	fmt.Fprintf(os.Stderr, "envtest: control plane up in %v\n", env.started.Round(time.Millisecond))
	env.client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		env.err = err
		return
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		env.err = err
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	env.stop, env.done = cancel, make(chan struct{})
	if err := controller.Setup(ctx, mgr, testConfig); err != nil {
		env.err = err
		return
	}
	if err := setupExtra(ctx, mgr); err != nil {
		env.err = err
		return
	}
	go func() {
		defer close(env.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
}

// setupExtra registers what later tests add to the manager (autoscaler).
var setupExtra = func(context.Context, ctrl.Manager) error { return nil }

// addressableCRD is a stand-in for Knative's addressable kinds: anything
// with status.address.url.
func addressableCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "sinks.example.jetstate.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.jetstate.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "sinks", Singular: "sink", Kind: "Sink", ListKind: "SinkList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
}

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	c := k8s(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t-" + hex.EncodeToString(b)}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// eventually calls check until it returns nil or timeout passes, then
// fails with its last error.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyCondition is obj's Ready condition, or an error when it has none.
func readyCondition(conds []metav1.Condition) (metav1.Condition, error) {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return metav1.Condition{}, fmt.Errorf("no Ready condition")
	}
	return *c, nil
}

// waitReady waits until get's object has Ready with the status and reason
// given and returns the condition.
func waitReady(t *testing.T, obj client.Object, conds func() []metav1.Condition, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, 20*time.Second, func() error {
		if err := env.client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c, err := readyCondition(conds())
		if err != nil {
			return err
		}
		got = c
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s %s: Ready %s/%s (%s), want %s/%s", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), c.Status, c.Reason, c.Message, status, reason)
		}
		return nil
	})
	return got
}
