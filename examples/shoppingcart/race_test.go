//go:build race

package shoppingcart_test

// raceEnabled: the test binary has the race detector, and so get the
// binaries it builds.
const raceEnabled = true
