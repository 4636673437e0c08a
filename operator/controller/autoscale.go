package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/autoscaler"
)

// DefaultAutoscalerSync is how often the Autoscaling runnable looks for
// stores whose services want autoscaling.
const DefaultAutoscalerSync = 10 * time.Second

// Autoscaling runs the autoscaler (package autoscaler) for every Ready
// StatefulStore used by at least one StatefulService with autoscaling
// enabled: an Aggregator reading the sidecars' load reports on the store's
// NATS, the decision state in the store's <prefix>_autoscaler bucket, and a
// Runner whose Target is those StatefulServices' scale subresource. It is a
// manager Runnable that runs on the leader only (one Runner per bucket).
type Autoscaling struct {
	Client   client.Client
	Secrets  client.Reader
	Recorder EventRecorder
	Config   Config
	// Tick is the Runner's decision period (default autoscaler.DefaultTick).
	Tick time.Duration
	// Sync is how often stores are looked for (default 10 s).
	Sync time.Duration
	// Logger receives the autoscaler's decisions and errors; nil discards.
	Logger *slog.Logger
	// Registry receives the autoscaler's metrics; nil registers nowhere.
	Registry prometheus.Registerer
}

// +kubebuilder:rbac:groups=jetstate.io,resources=statefulservices/scale,verbs=get;update;patch

// NeedLeaderElection makes the manager run it on the leader only.
func (a *Autoscaling) NeedLeaderElection() bool { return true }

// running is the autoscaler of one store.
type running struct {
	key    string // what it was started with: a change restarts it
	cancel context.CancelFunc
	done   chan struct{}
}

// Start supervises one autoscaler per store until ctx is done.
func (a *Autoscaling) Start(ctx context.Context) error {
	cfg := a.Config.withDefaults()
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := a.Sync
	if every <= 0 {
		every = DefaultAutoscalerSync
	}
	active := map[types.NamespacedName]*running{}
	stop := func(name types.NamespacedName) {
		r := active[name]
		r.cancel()
		<-r.done
		delete(active, name)
	}
	defer func() {
		for name := range active {
			stop(name)
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		want, err := a.stores(ctx)
		if err != nil {
			log.Warn("autoscaler: list stores", "error", err)
		} else {
			for name, r := range active {
				if st, ok := want[name]; !ok || runKey(st) != r.key || isDone(r.done) {
					stop(name)
				}
			}
			for name, st := range want {
				if active[name] == nil {
					active[name] = a.run(ctx, st, cfg, log.With("store", name.String()))
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func runKey(st *v1alpha1.StatefulStore) string {
	return fmt.Sprintf("%s/%d", st.UID, st.Generation)
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stores are the Ready stores with at least one autoscaled service.
func (a *Autoscaling) stores(ctx context.Context) (map[types.NamespacedName]*v1alpha1.StatefulStore, error) {
	var svcs v1alpha1.StatefulServiceList
	if err := a.Client.List(ctx, &svcs); err != nil {
		return nil, err
	}
	want := map[types.NamespacedName]*v1alpha1.StatefulStore{}
	for _, s := range svcs.Items {
		if !autoscaled(&s) {
			continue
		}
		name := types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.Store.Name}
		if _, ok := want[name]; ok {
			continue
		}
		var st v1alpha1.StatefulStore
		if err := a.Client.Get(ctx, name, &st); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		if ok, _ := storeReady(&st); ok {
			want[name] = &st
		}
	}
	return want, nil
}

func autoscaled(s *v1alpha1.StatefulService) bool {
	return s.Spec.Autoscaling != nil && s.Spec.Autoscaling.Enabled && s.DeletionTimestamp.IsZero()
}

// run starts the autoscaler of one store; it stops on its own when NATS
// cannot be reached or the bucket cannot be made (and is started again at
// the next sync).
func (a *Autoscaling) run(ctx context.Context, store *v1alpha1.StatefulStore, cfg Config, log *slog.Logger) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{key: runKey(store), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := a.runStore(ctx, store, cfg, log); err != nil && ctx.Err() == nil {
			log.Warn("autoscaler stopped", "error", err)
		}
	}()
	return r
}

func (a *Autoscaling) runStore(ctx context.Context, store *v1alpha1.StatefulStore, cfg Config, log *slog.Logger) error {
	opts, err := natsOptions(ctx, a.Secrets, store)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(joinURLs(store), append(opts, nats.Name("jetstate operator autoscaler"),
		nats.Timeout(cfg.ConnectTimeout), nats.MaxReconnects(-1))...)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	prefix := prefixOf(store)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	state, err := autoscaler.NewStore(sctx, js, autoscaler.StoreConfig{Prefix: prefix, Replicas: int(max(store.Spec.StreamReplicas, 1))})
	cancel()
	if err != nil {
		return err
	}
	loads := autoscaler.NewAggregator(autoscaler.AggregatorConfig{Conn: nc, Prefix: prefix, Logger: log, Registry: a.registry()})
	runner, err := autoscaler.New(autoscaler.Config{
		Target: &scaleTarget{c: a.Client, rec: a.Recorder, ns: store.Namespace, store: store.Name},
		Loads:  loads, Store: state, Tick: a.Tick, Logger: log, Registry: a.registry(),
	})
	if err != nil {
		return err
	}
	log.Info("autoscaler started", "prefix", prefix)
	errs := make(chan error, 2)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs <- loads.Run(rctx) }()
	go func() { defer wg.Done(); errs <- runner.Run(rctx) }()
	err = <-errs
	stop()
	wg.Wait()
	return err
}

// registry: the runners of several stores share one registry, where the
// autoscaler's collectors are registered once (see its metrics.go).
func (a *Autoscaling) registry() prometheus.Registerer { return a.Registry }

// scaleTarget is the autoscaler's Target for the services of one store:
// the StatefulServices naming it with autoscaling enabled, scaled through
// their scale subresource.
type scaleTarget struct {
	c     client.Client
	rec   EventRecorder
	ns    string
	store string

	objects map[string]types.NamespacedName // jetstate service name -> object
}

func (t *scaleTarget) Services(ctx context.Context) ([]autoscaler.Service, error) {
	var list v1alpha1.StatefulServiceList
	if err := t.c.List(ctx, &list, client.InNamespace(t.ns), client.MatchingFields{storeIndex: t.store}); err != nil {
		return nil, err
	}
	t.objects = map[string]types.NamespacedName{}
	var out []autoscaler.Service
	for i := range list.Items {
		s := &list.Items[i]
		if !autoscaled(s) {
			continue
		}
		svc := autoscaler.Service{Name: serviceNameOf(s), Policy: policyOf(s.Spec.Autoscaling), Replicas: int(ptr.Deref(s.Spec.Replicas, 1))}
		var dep appsv1.Deployment
		switch err := t.c.Get(ctx, client.ObjectKeyFromObject(s), &dep); {
		case apierrors.IsNotFound(err):
			continue // not deployed yet
		case err != nil:
			return nil, err
		}
		svc.Ready = int(dep.Status.ReadyReplicas)
		// Pods of an older template still run: a rollout, not a scale change.
		svc.RollingOut = dep.Status.Replicas > dep.Status.UpdatedReplicas
		t.objects[svc.Name] = client.ObjectKeyFromObject(s)
		out = append(out, svc)
	}
	return out, nil
}

func (t *scaleTarget) Scale(ctx context.Context, svc autoscaler.Service, replicas int, reason string) error {
	name, ok := t.objects[svc.Name]
	if !ok {
		return fmt.Errorf("service %s is not known", svc.Name)
	}
	obj := &v1alpha1.StatefulService{}
	obj.Namespace, obj.Name = name.Namespace, name.Name
	var scale autoscalingv1.Scale
	if err := t.c.SubResource("scale").Get(ctx, obj, &scale); err != nil {
		return err
	}
	from := scale.Spec.Replicas
	scale.Spec.Replicas = int32(replicas)
	if err := t.c.SubResource("scale").Update(ctx, obj, client.WithSubResourceBody(&scale)); err != nil {
		return err
	}
	if t.rec != nil {
		t.rec.Eventf(obj, nil, corev1.EventTypeNormal, "Scaled", "Autoscale", "%d -> %d replicas: %s", from, replicas, reason)
	}
	return nil
}

// policyOf maps a StatefulService's autoscaling spec to the autoscaler's
// Policy (zero fields are the autoscaler's defaults, which the CRD's
// defaults repeat).
func policyOf(s *v1alpha1.AutoscalingSpec) autoscaler.Policy {
	p := autoscaler.Policy{Min: int(s.MinReplicas), Max: int(s.MaxReplicas), MaxScaleStep: int(s.MaxStep)}
	if q := s.TargetUserFunctionConcurrency; q != nil {
		p.TargetUserFunctionConcurrency = q.AsApproximateFloat64()
	}
	if q := s.TargetRequestConcurrency; q != nil {
		p.TargetRequestConcurrency = q.AsApproximateFloat64()
	}
	if q := s.RequestRateThresholdFactor; q != nil {
		p.RequestRateThresholdFactor = q.AsApproximateFloat64()
	}
	if d := s.ScaleUpStabilization; d != nil {
		p.ScaleUpStabilization = d.Duration
	}
	if d := s.ScaleDownStabilization; d != nil {
		p.ScaleDownStabilization = d.Duration
	}
	return p
}
