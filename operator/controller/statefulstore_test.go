package controller_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// createStore creates a StatefulStore for url in ns.
func createStore(t *testing.T, ns, name, url string) *v1alpha1.StatefulStore {
	t.Helper()
	s := &v1alpha1.StatefulStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.StatefulStoreSpec{URLs: []string{url}, Storage: "memory"},
	}
	if err := k8s(t).Create(t.Context(), s); err != nil {
		t.Fatalf("create store: %v", err)
	}
	return s
}

// readyStore creates a store on a fresh in-process NATS server and waits
// until it is Ready.
func readyStore(t *testing.T, ns, name string) (*v1alpha1.StatefulStore, *streamstest.Server) {
	t.Helper()
	srv := streamstest.RunServer(t)
	s := createStore(t, ns, name, srv.ClientURL())
	waitReady(t, s, func() []metav1.Condition { return s.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	return s, srv
}

// deadURL is a NATS URL nobody listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "nats://" + addr
}

func TestStatefulStore(t *testing.T) {
	ns := namespace(t)
	t.Run("live server", func(t *testing.T) {
		s, _ := readyStore(t, ns, "live")
		if s.Status.ServerVersion == "" || s.Status.APILevel < streams.MinAPILevel || s.Status.LastChecked == nil ||
			s.Status.ObservedGeneration != s.Generation {
			t.Errorf("status %+v", s.Status)
		}
	})
	t.Run("dead URL", func(t *testing.T) {
		s := createStore(t, ns, "dead", deadURL(t))
		c := waitReady(t, s, func() []metav1.Condition { return s.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonConnectFailed)
		if c.Message == "" {
			t.Error("no message")
		}
	})
	t.Run("no JetStream", func(t *testing.T) {
		srv := streamstest.RunServer(t, streamstest.WithoutJetStream())
		s := createStore(t, ns, "nojs", srv.ClientURL())
		waitReady(t, s, func() []metav1.Condition { return s.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonJetStreamUnavailable)
	})
	t.Run("missing credentials secret", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		s := &v1alpha1.StatefulStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nocreds"},
			Spec: v1alpha1.StatefulStoreSpec{URLs: []string{srv.ClientURL()},
				Credentials: &v1alpha1.SecretKeyReference{Name: "nats-user"}},
		}
		if err := k8s(t).Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		waitReady(t, s, func() []metav1.Condition { return s.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	})
	t.Run("server goes away", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		s := createStore(t, ns, "flaky", srv.ClientURL())
		conds := func() []metav1.Condition { return s.Status.Conditions }
		waitReady(t, s, conds, metav1.ConditionTrue, v1alpha1.ReasonReady)
		srv.Stop()
		// The next check comes with a spec change (or the check interval).
		s.Spec.CheckInterval = &metav1.Duration{Duration: 300 * time.Millisecond}
		if err := k8s(t).Update(t.Context(), s); err != nil {
			t.Fatal(fmt.Errorf("update: %w", err))
		}
		waitReady(t, s, conds, metav1.ConditionFalse, v1alpha1.ReasonConnectFailed)
	})
}

// TestStatefulStoreNKey connects with an nkey seed from a secret: the
// right seed is Ready, another user's seed is refused by the server, and
// the sidecar gets the seed mounted as a file.
func TestStatefulStoreNKey(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	// no_auth_user lets streamstest's own unauthenticated client in (as the
	// same user); a client presenting an nkey must sign with the right seed.
	srv := streamstest.RunServer(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		o.NoAuthUser = pub
	})
	for name, s := range map[string][]byte{"right": seed, "wrong": otherSeed} {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"seed.nk": s}}
		if err := c.Create(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
	}
	store := func(name, secret string) *v1alpha1.StatefulStore {
		s := &v1alpha1.StatefulStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.StatefulStoreSpec{URLs: []string{srv.ClientURL()}, NKey: &v1alpha1.SecretKeyReference{Name: secret}},
		}
		if err := c.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	good, bad := store("good", "right"), store("bad", "wrong")
	waitReady(t, good, func() []metav1.Condition { return good.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	c0 := waitReady(t, bad, func() []metav1.Condition { return bad.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonConnectFailed)
	if !strings.Contains(strings.ToLower(c0.Message), "authorization") {
		t.Errorf("message %q does not say authorization", c0.Message)
	}

	svc := newService(ns, "cart", "good")
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)
	if got := envOf(container(d, "jetstate"))["NATS_NKEY"]; got != "/etc/jetstate/nats/nkey/seed.nk" {
		t.Errorf("NATS_NKEY %q", got)
	}
	vols := d.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].Secret == nil || vols[0].Secret.SecretName != "right" ||
		len(vols[0].Secret.Items) != 1 || vols[0].Secret.Items[0].Key != "seed.nk" {
		t.Errorf("volumes %+v", vols)
	}
	mounts := container(d, "jetstate").VolumeMounts
	if len(mounts) != 1 || mounts[0].MountPath != "/etc/jetstate/nats/nkey" || !mounts[0].ReadOnly {
		t.Errorf("mounts %+v", mounts)
	}
}
