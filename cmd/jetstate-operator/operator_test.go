package main

import (
	"bytes"
	"slices"
	"testing"
)

func TestParseOperator(t *testing.T) {
	env := map[string]string{"JETSTATE_SIDECAR_IMAGE": "registry/jetstate:1", "WATCH_NAMESPACES": "a, b", "LEADER_ELECT": "true"}
	c, err := parseOperator(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Controller.SidecarImage != "registry/jetstate:1" || !slices.Equal(c.Namespaces, []string{"a", "b"}) || !c.LeaderElect ||
		!c.Autoscaler || c.MetricsAddr != ":8080" || c.HealthAddr != ":8081" {
		t.Errorf("parsed %+v", c)
	}
	c, err = parseOperator([]string{"-sidecar-image", "x:2", "-namespaces", "", "-autoscaler=false", "-sidecar-pull-policy", "Always"},
		func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || c.Controller.SidecarImage != "x:2" || len(c.Namespaces) != 0 || c.Autoscaler || c.Controller.SidecarPullPolicy != "Always" {
		t.Errorf("parsed %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"-sidecar-pull-policy", "Sometimes"}, {"-autoscaler-tick", "-1s"}, {"extra"}, {"-nope"}} {
		if _, err := parseOperator(bad, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
			t.Errorf("parseOperator(%q) accepted", bad)
		}
	}
}
