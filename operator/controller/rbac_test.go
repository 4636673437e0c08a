package controller_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// TestRBAC checks that the generated ClusterRole (crds/rbac/role.yaml)
// allows every call the operator makes, asking the API server's RBAC
// authorizer about a user bound to it.
func TestRBAC(t *testing.T) {
	c := k8s(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "crds", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &role); err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "jetstate-operator-rbac-test-" + hex.EncodeToString(suffix)
	role.Name = name
	if err := c.Create(t.Context(), &role); err != nil {
		t.Fatal(err)
	}
	user := name
	binding := &rbacv1.ClusterRoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}
	binding.Name = name
	if err := c.Create(t.Context(), binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Delete(t.Context(), binding)
		_ = c.Delete(t.Context(), &role)
	})

	allowed := func(verb, group, resource, subresource string) bool {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: "default", Verb: verb, Group: group, Resource: resource, Subresource: subresource,
			},
		}}
		if err := c.Create(t.Context(), sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	// The RBAC authorizer reads roles and bindings from an informer: a
	// binding just created may not be seen yet (one such denial was seen in
	// CI under load). Wait until the binding is seen at all, by an access
	// the role plainly grants, before asking about each.
	deadline := time.Now().Add(time.Minute) // a failsafe only
	for !allowed("get", "jetstate.io", "statefulstores", "") {
		if time.Now().After(deadline) {
			t.Fatal("the authorizer never saw the role binding (get statefulstores still denied after a minute)")
		}
		time.Sleep(50 * time.Millisecond)
	}

	type access struct{ group, resource, subresource, verbs, why string }
	for _, a := range []access{
		{"jetstate.io", "statefulstores", "", "get list watch", "the store reconciler, the services' store watch"},
		{"jetstate.io", "statefulstores", "status", "patch", "the store's status"},
		{"jetstate.io", "statefulservices", "", "get list watch patch", "reconcile, the finalizer"},
		{"jetstate.io", "statefulservices", "status", "patch", "the service's status"},
		{"jetstate.io", "statefulservices", "finalizers", "update", "owner references that block deletion"},
		{"jetstate.io", "statefulservices", "scale", "get update", "the autoscaler"},
		{"jetstate.io", "projections", "", "get list watch", "the projection reconciler"},
		{"jetstate.io", "projections", "status", "patch", "the projection's status"},
		{"jetstate.io", "projections", "finalizers", "update", "owner references that block deletion"},
		{"apps", "deployments", "", "get list watch patch", "server-side apply of the owned Deployments"},
		{"", "services", "", "get list watch patch", "server-side apply of the owned Services"},
		{"", "secrets", "", "get", "the stores' credentials and TLS (uncached)"},
		{"events.k8s.io", "events", "", "create patch", "the reconcilers' and autoscaler's events"},
		{"", "events", "", "create patch", "leader election records its events with the core/v1 API"},
		{"coordination.k8s.io", "leases", "", "get create update", "leader election"},
		{"eventing.knative.dev", "brokers", "", "get", "a projection's sink ref"},
	} {
		for _, verb := range strings.Fields(a.verbs) {
			if !allowed(verb, a.group, a.resource, a.subresource) {
				t.Errorf("%s %s/%s (group %q) denied: needed for %s", verb, a.resource, a.subresource, a.group, a.why)
			}
		}
	}
}
