package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/jetstate/jetstate/operator/controller"
)

// TestOperatorManifest reads the operator's Deployment in crds/operator.yaml
// and parses its container's arguments and plain environment as this binary
// does: they must be flags it takes, its image must be the operator's (the
// sidecars' image, jetstate, has no operator in it) and the sidecars must get
// the default sidecar image.
func TestOperatorManifest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "crds", "operator.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var d appsv1.Deployment
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" {
			dep = &d
		}
	}
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("crds/operator.yaml: want a Deployment with one container, got %+v", dep)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	image, _, _ := strings.Cut(c.Image, ":")
	if image != "ghcr.io/jetstate/jetstate-operator" || len(c.Command) != 0 {
		t.Errorf("container image %q, command %q; want ghcr.io/jetstate/jetstate-operator and its entrypoint", c.Image, c.Command)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		} else {
			env[e.Name] = "from-the-pod"
		}
	}
	cfg, err := parseOperator(c.Args, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	if !cfg.LeaderElect || cfg.LeaderNamespace != "from-the-pod" || cfg.Controller.SidecarImage != controller.DefaultSidecarImage {
		t.Errorf("args %q, env %v: leader election %v in %q, sidecar image %q; want election in the pod's namespace and %q",
			c.Args, env, cfg.LeaderElect, cfg.LeaderNamespace, cfg.Controller.SidecarImage, controller.DefaultSidecarImage)
	}
}
