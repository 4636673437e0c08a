package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/autoscaler"
	"github.com/jetstate/jetstate/operator/controller"
	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams"
)

func init() {
	setupExtra = func(_ context.Context, mgr ctrl.Manager) error {
		return mgr.Add(&controller.Autoscaling{
			Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("test"), Config: testConfig,
			Tick: 200 * time.Millisecond, Sync: 300 * time.Millisecond,
		})
	}
}

// TestAutoscaler publishes load reports on NATS as a busy sidecar would
// and checks that the autoscaler writes the StatefulService's scale
// subresource (and so the Deployment), records why, and keeps its state in
// the store's bucket.
func TestAutoscaler(t *testing.T) {
	ns := namespace(t)
	store, srv := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	svc.Spec.Autoscaling = &v1alpha1.AutoscalingSpec{Enabled: true, MinReplicas: 1, MaxReplicas: 5, MaxStep: 2}
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)
	markRolledOut(t, d)

	// One sidecar, its function handling 3 commands at a time on average
	// (target 1): 3 replicas are needed, which one step of 2 reaches.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject := streams.Config{Service: "cart"}.LoadSubject()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	published := make(chan struct{})
	go func() {
		defer close(published)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			b, _ := proto.Marshal(&load.Report{
				Member: "cart-0", Service: "cart", IntervalNanos: int64(100 * time.Millisecond),
				RequestConcurrency: 3, RequestCount: 30, FunctionConcurrency: 3, FunctionCount: 30,
				SentUnixNanos: time.Now().UnixNano(),
			})
			_ = nc.Publish(subject, b)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	eventually(t, 30*time.Second, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		if n := ptr.Deref(svc.Spec.Replicas, 0); n != 3 {
			return fmt.Errorf("spec.replicas %d, want 3", n)
		}
		return nil
	})
	stop()
	<-published
	deployment(t, ns, "cart", func(d *appsv1.Deployment) error {
		if n := ptr.Deref(d.Spec.Replicas, 0); n != 3 {
			return fmt.Errorf("deployment replicas %d, want 3", n)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		var evs eventsv1.EventList
		if err := c.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "Scaled" && e.Regarding.Name == "cart" {
				return nil
			}
		}
		return fmt.Errorf("no Scaled event among %d", len(evs.Items))
	})

	// The decision state is in the store's bucket, for a restarted operator.
	kv, err := srv.JetStream(t).KeyValue(t.Context(), autoscaler.StoreConfig{}.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "cart")
	if err != nil {
		t.Fatal(err)
	}
	var st autoscaler.State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != autoscaler.ScalingUp || st.Desired != 3 {
		t.Errorf("state %+v, want ScalingUp to 3", st)
	}
}
