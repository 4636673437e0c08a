package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// Default keys in the secrets a StatefulStore names.
const (
	defaultCredsKey = "nats.creds"
	defaultNKeyKey  = "seed.nk"
	defaultCAKey    = "ca.crt"
)

func keyOr(ref *v1alpha1.SecretKeyReference, def string) string {
	if ref.Key != "" {
		return ref.Key
	}
	return def
}

// secretValue reads one key of a secret in ns; a missing secret or key is
// a SecretNotFound error.
func secretValue(ctx context.Context, c client.Reader, ns, name, key string) ([]byte, error) {
	var s corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "secret %s/%s not found", ns, name)
		}
		return nil, fmt.Errorf("get secret %s/%s: %w", ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, reasonf(v1alpha1.ReasonSecretNotFound, "secret %s/%s has no key %q", ns, name, key)
	}
	return v, nil
}

// natsOptions builds the credentials and TLS options of a store from its
// secrets.
func natsOptions(ctx context.Context, c client.Reader, store *v1alpha1.StatefulStore) ([]nats.Option, error) {
	ns, spec := store.Namespace, store.Spec
	var opts []nats.Option
	if ref := spec.Credentials; ref != nil {
		creds, err := secretValue(ctx, c, ns, ref.Name, keyOr(ref, defaultCredsKey))
		if err != nil {
			return nil, err
		}
		jwt, err := nkeys.ParseDecoratedJWT(creds)
		if err != nil {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "credentials in secret %s: %v", ref.Name, err)
		}
		kp, err := nkeys.ParseDecoratedNKey(creds)
		if err != nil {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "credentials in secret %s: %v", ref.Name, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "credentials in secret %s: %v", ref.Name, err)
		}
		opts = append(opts, nats.UserJWTAndSeed(jwt, string(seed)))
	}
	if ref := spec.NKey; ref != nil {
		raw, err := secretValue(ctx, c, ns, ref.Name, keyOr(ref, defaultNKeyKey))
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedNKey(raw)
		if err != nil {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "nkey in secret %s: %v", ref.Name, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, reasonf(v1alpha1.ReasonSecretNotFound, "nkey in secret %s: %v", ref.Name, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	if t := spec.TLS; t != nil && (t.CA != nil || t.ClientCertSecret != "") {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CA != nil {
			pem, err := secretValue(ctx, c, ns, t.CA.Name, keyOr(t.CA, defaultCAKey))
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, reasonf(v1alpha1.ReasonSecretNotFound, "secret %s holds no PEM certificate", t.CA.Name)
			}
		}
		if name := t.ClientCertSecret; name != "" {
			crt, err := secretValue(ctx, c, ns, name, corev1.TLSCertKey)
			if err != nil {
				return nil, err
			}
			key, err := secretValue(ctx, c, ns, name, corev1.TLSPrivateKeyKey)
			if err != nil {
				return nil, err
			}
			pair, err := tls.X509KeyPair(crt, key)
			if err != nil {
				return nil, reasonf(v1alpha1.ReasonSecretNotFound, "client certificate in secret %s: %v", name, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// connect opens a NATS connection to the store: no reconnects, bounded by
// timeout. The caller closes it. Failures carry their condition reason.
func connect(ctx context.Context, c client.Reader, store *v1alpha1.StatefulStore, timeout time.Duration) (*nats.Conn, error) {
	opts, err := natsOptions(ctx, c, store)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	opts = append(opts, nats.Name("jetstate operator"), nats.Timeout(timeout), nats.MaxReconnects(0),
		nats.NoCallbacksAfterClientClose())
	url := joinURLs(store)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, reasonf(v1alpha1.ReasonConnectFailed, "connect %s: authorization: %v", url, err)
		}
		return nil, reasonf(v1alpha1.ReasonConnectFailed, "connect %s: %v", url, err)
	}
	return nc, nil
}

// joinURLs is the store's URLs as nats.Connect takes them.
func joinURLs(store *v1alpha1.StatefulStore) string {
	return strings.Join(store.Spec.URLs, ",")
}
