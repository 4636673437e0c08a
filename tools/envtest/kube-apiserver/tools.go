//go:build tools

// Package tools pins kube-apiserver so that `go mod tidy` keeps its
// dependencies; build.sh builds it with `go build k8s.io/kubernetes/cmd/kube-apiserver`.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
