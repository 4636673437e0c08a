package main

// The images are built on an empty base, which has no CA certificates in
// /etc/ssl: without roots of its own the binary could not verify a NATS
// server's or an HTTPS sink's certificate unless the user mounts a CA.
// The Go team's fallback bundle (Mozilla's roots) is used only when the
// system has none, so certificates installed on a host or in an image
// still win.
import _ "golang.org/x/crypto/x509roots/fallback"
