package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"testing"
)

// On the image's empty base there are no CA certificates: the operator then
// verifies with the fallback bundle. The child process sees a system with
// no roots (SSL_CERT_FILE and SSL_CERT_DIR name an empty directory) and
// must still get a pool holding roots.
func TestRootsWithoutSystemCertificates(t *testing.T) {
	if os.Getenv("JETSTATE_OPERATOR_ROOTS_CHILD") == "1" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			t.Fatalf("no certificate pool: %v", err)
		}
		if pool.Equal(x509.NewCertPool()) {
			t.Fatal("the certificate pool is empty: no store's certificate could be verified")
		}
		return
	}
	empty := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRootsWithoutSystemCertificates$", "-test.count=1")
	cmd.Env = append(os.Environ(), "JETSTATE_OPERATOR_ROOTS_CHILD=1", "SSL_CERT_FILE="+empty+"/none.pem", "SSL_CERT_DIR="+empty)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
