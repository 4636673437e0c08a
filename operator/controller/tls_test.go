package controller_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/controller"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, in PEM.
type testPKI struct {
	caPEM                    []byte
	serverCert               tls.Certificate
	clientCertPEM, clientKey []byte
	pool                     *x509.CertPool
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "jetstate"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	scrt, skey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	if p.serverCert, err = tls.X509KeyPair(scrt, skey); err != nil {
		t.Fatal(err)
	}
	p.clientCertPEM, p.clientKey = issue(3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

// TestStatefulStoreTLS connects over mutual TLS with the CA and client
// certificate from secrets; without the CA the server's certificate is not
// trusted.
func TestStatefulStoreTLS(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	pki := newPKI(t)
	// TLS with client certificates; plain connections stay allowed for
	// streamstest's own readiness check.
	srv := streamstest.RunServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.AllowNonTLS = true, true, true
		o.TLSTimeout = 2
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{pki.serverCert}, ClientCAs: pki.pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}
	})
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats-ca"}, Data: map[string][]byte{"ca.crt": pki.caPEM}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats-client"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": pki.clientCertPEM, "tls.key": pki.clientKey}},
	} {
		if err := c.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	store := func(name string, spec *v1alpha1.TLSSpec) *v1alpha1.StatefulStore {
		s := &v1alpha1.StatefulStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.StatefulStoreSpec{URLs: []string{url}, TLS: spec},
		}
		if err := c.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := store("mtls", &v1alpha1.TLSSpec{CA: &v1alpha1.SecretKeyReference{Name: "nats-ca"}, ClientCertSecret: "nats-client"})
	untrusted := store("no-ca", &v1alpha1.TLSSpec{ClientCertSecret: "nats-client"})
	waitReady(t, good, func() []metav1.Condition { return good.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	waitReady(t, untrusted, func() []metav1.Condition { return untrusted.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonConnectFailed)

	svc := newService(ns, "cart", "mtls")
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)
	env := envOf(container(d, "jetstate"))
	for k, want := range map[string]string{
		"NATS_URL":      url,
		"NATS_TLS_CA":   "/etc/jetstate/nats/ca/ca.crt",
		"NATS_TLS_CERT": "/etc/jetstate/nats/tls/tls.crt",
		"NATS_TLS_KEY":  "/etc/jetstate/nats/tls/tls.key",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if n := len(d.Spec.Template.Spec.Volumes); n != 2 {
		t.Errorf("%d volumes, want the CA and the client certificate", n)
	}
	// The jetstate image runs as a non-root user (distroless nonroot,
	// 65532:65532) and the pod sets no fsGroup: the secret files are
	// root:root, so the user reads them only if "other" may.
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			mode := ptr.Deref(v.Secret.DefaultMode, 0o644)
			for _, it := range v.Secret.Items {
				if it.Mode != nil {
					mode = *it.Mode
				}
			}
			if mode&0o004 == 0 {
				t.Errorf("volume %s: mode %#o, unreadable by the sidecar's non-root user", v.Name, mode)
			}
		}
	}
}

// TestStatefulServiceSecretGone checks that a service whose store's secret
// is missing when its pods are configured (the store still Ready: its
// next check has not come) is looked at again, not left until the store's
// Ready condition changes: a secret deleted and created again (a rotation)
// never changes it.
func TestStatefulServiceSecretGone(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	pki := newPKI(t)
	srv := streamstest.RunServer(t, func(o *server.Options) {
		o.TLS, o.AllowNonTLS, o.TLSTimeout = true, true, 2
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pki.serverCert}, MinVersion: tls.VersionTLS12}
	})
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats-ca"}, Data: map[string][]byte{"ca.crt": pki.caPEM}}
	if err := c.Create(t.Context(), ca); err != nil {
		t.Fatal(err)
	}
	store := &v1alpha1.StatefulStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nats"},
		Spec: v1alpha1.StatefulStoreSpec{URLs: []string{strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)},
			TLS: &v1alpha1.TLSSpec{CA: &v1alpha1.SecretKeyReference{Name: "nats-ca"}}},
	}
	if err := c.Create(t.Context(), store); err != nil {
		t.Fatal(err)
	}
	waitReady(t, store, func() []metav1.Condition { return store.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}

	// A reconciler of our own, called directly: it provisions, then the
	// secret goes.
	r := &controller.StatefulServiceReconciler{Client: c, Secrets: c, Recorder: &eventLog{}, Config: testConfig}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}
	eventually(t, 10*time.Second, func() error { // conflicts with the manager's reconciler
		_, err := r.Reconcile(t.Context(), req)
		return err
	})
	if err := c.Delete(t.Context(), ca); err != nil {
		t.Fatal(err)
	}
	var res ctrl.Result
	eventually(t, 10*time.Second, func() error {
		var err error
		res, err = r.Reconcile(t.Context(), req)
		return err
	})
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v: nothing brings the service back when the secret returns", res)
	}
}
