package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/controller"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestRunOperator runs the operator as the binary would, against a
// real API server (envtest) reached through KUBECONFIG, and checks that it
// reconciles a StatefulStore on an in-process NATS server and stops
// cleanly.
func TestRunOperator(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		msg := "KUBEBUILDER_ASSETS is not set; run: KUBEBUILDER_ASSETS=$(tools/envtest/assets.sh) go test -race ./cmd/jetstate-operator/ (or make test)"
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
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, te.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)

	c, err := parseOperator([]string{"-metrics-bind-address", "0", "-health-probe-bind-address", "127.0.0.1:0", "-sidecar-image", "jetstate:e2e"},
		func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg     sync.WaitGroup
		runErr error
		out    bytes.Buffer
	)
	wg.Go(func() { runErr = runOperator(ctx, c, &out) })

	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	srv := streamstest.RunServer(t)
	store := &v1alpha1.StatefulStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "nats"},
		Spec:       v1alpha1.StatefulStoreSpec{URLs: []string{srv.ClientURL()}},
	}
	if err := k.Create(t.Context(), store); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := k.Get(t.Context(), client.ObjectKeyFromObject(store), store); err != nil {
			t.Fatal(err)
		}
		if meta.IsStatusConditionTrue(store.Status.Conditions, v1alpha1.ConditionReady) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not Ready: %+v", store.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Errorf("runOperator: %v", runErr)
	}
	if want := "jetstate-operator: watching all namespaces, sidecar image jetstate:e2e"; !bytes.Contains(out.Bytes(), []byte(want)) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
}
