package main

// The operator's image, like the sidecar's, is built on an empty base with
// no CA certificates: the Go team's fallback bundle (Mozilla's roots) lets
// it verify a NATS server's certificate signed by a public CA (a
// StatefulStore with TLS and no CA of its own). It is used only when the
// system has no roots, so certificates on a host or in an image still win.
import _ "golang.org/x/crypto/x509roots/fallback"
