package controller_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestManifests checks that crds/kustomization.yaml names existing files
// and that the plain manifests (namespace, RBAC, operator) and the
// Kubernetes example are objects the API server accepts (strict field
// validation: a misspelt field fails).
func TestManifests(t *testing.T) {
	c := k8s(t)
	for _, tc := range []struct {
		dir string
		ns  string // set on namespaced objects; "" keeps the files' own
	}{
		{filepath.Join("..", "..", "crds"), ""},
		{filepath.Join("..", "..", "examples", "kubernetes"), namespace(t)},
	} {
		kust, err := os.ReadFile(filepath.Join(tc.dir, "kustomization.yaml"))
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
			t.Fatalf("%s: kustomization lists no resources", tc.dir)
		}
		for _, r := range k.Resources {
			b, err := os.ReadFile(filepath.Join(tc.dir, r))
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
				if tc.ns != "" {
					if u.GetKind() == "Namespace" {
						continue
					}
					u.SetNamespace(tc.ns)
				}
				// AlreadyExists (from an earlier run in this API server, go test -count=N)
				// comes from storage, after decoding, strict field validation, admission and
				// validation passed: the manifest was checked all the same.
				if err := c.Create(t.Context(), &u, client.FieldValidation("Strict")); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Errorf("%s/%s: create %s %s: %v", tc.dir, r, u.GetKind(), u.GetName(), err)
				}
			}
		}
	}
}
