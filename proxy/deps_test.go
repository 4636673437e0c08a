package proxy_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// TestPartsKeepTheirWalls checks ARCHITECTURE.md's rules of what may import
// what inside the sidecar, on the packages' real (non-test) imports,
// followed transitively through the module's packages.
func TestPartsKeepTheirWalls(t *testing.T) {
	const module = "github.com/jetstate/jetstate/"
	// deps returns the module's packages pkg imports, transitively.
	var deps func(pkg string, seen map[string]bool)
	deps = func(pkg string, seen map[string]bool) {
		dir := filepath.Join("..", strings.TrimPrefix(pkg, module))
		p, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) && !seen[imp] {
				seen[imp] = true
				deps(imp, seen)
			}
		}
	}
	forbidden := map[string][]string{
		"proxy/model":         {"proxy", "proxy/ingress", "proxy/eventing", "proxy/shard", "proxy/entity", "proxy/load"},
		"proxy/entity":        {"proxy", "proxy/ingress", "proxy/eventing", "proxy/shard", "proxy/load"},
		"proxy/eventing":      {"proxy", "proxy/ingress", "proxy/entity", "proxy/shard", "proxy/load"},
		"proxy/shard":         {"proxy", "proxy/ingress", "proxy/eventing", "proxy/load"},
		"proxy/ingress":       {"proxy", "proxy/eventing", "proxy/load"},
		"proxy/load":          {"proxy", "proxy/ingress", "proxy/eventing", "proxy/shard", "proxy/entity", "proxy/model"},
		"proxy/crdt":          {"proxy", "proxy/ingress", "proxy/eventing", "proxy/shard", "proxy/entity", "proxy/model", "proxy/load", "streams", "internal/keyq"},
		"streams":             {"proxy", "projections", "sdk", "protocol/cloudstate"},
		"projections":         {"proxy", "sdk"},
		"internal/keyq":       {"proxy", "projections"},
		"internal/deadletter": {"proxy", "projections"},
		"internal/cebinding":  {"proxy", "projections"},
		"console":             {"proxy", "proxy/ingress", "proxy/load", "sdk"},
	}
	for part, never := range forbidden {
		seen := map[string]bool{}
		deps(module+part, seen)
		for _, n := range never {
			if seen[module+n] {
				t.Errorf("%s imports %s (directly or through another package)", part, n)
			}
		}
	}
}
