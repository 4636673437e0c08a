package controller_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestManifests checks that crds/kustomization.yaml names existing files
// and that the plain manifests (namespace, RBAC, operator) are objects the
// API server accepts.
func TestManifests(t *testing.T) {
	c := k8s(t)
	dir := filepath.Join("..", "..", "crds")
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(kust, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Resources) == 0 {
		t.Fatal("kustomization lists no resources")
	}
	for _, r := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Errorf("kustomization resource: %v", err)
			continue
		}
		if strings.HasPrefix(r, "bases/") {
			continue // installed by envtest already
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			err := dec.Decode(&u.Object)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := c.Create(t.Context(), &u, client.FieldValidation("Strict")); err != nil {
				t.Errorf("%s: create %s %s: %v", r, u.GetKind(), u.GetName(), err)
			}
		}
	}
}
