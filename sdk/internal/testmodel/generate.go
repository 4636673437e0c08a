// Package testmodel holds the generated Go of testmodel.proto: the model services, requests and
// events that the sdk tests use to play the proxy's role. It is internal to the sdk's tests.
package testmodel

//go:generate go tool -modfile=../../../tools/buf/go.mod buf generate ../../.. --config buf.config.yaml --template buf.gen.yaml --path testmodel.proto --path crdtmodel.proto
