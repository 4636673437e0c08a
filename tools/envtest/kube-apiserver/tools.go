//go:build tools

// Package tools pins the Kubernetes commands built from this module so that
// `go mod tidy` keeps their dependencies: kube-apiserver for envtest
// (tools/envtest/assets.sh), and the rest of a one-node cluster
// (tools/cluster/build.sh). One k8s.io/kubernetes version rules both.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
