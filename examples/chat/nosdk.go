//go:build !crdtsdk

package chat

import (
	"errors"

	"github.com/jetstate/jetstate/sdk"
)

// ErrNoCRDTSDK is what Entities returns while the SDK has no CRDT API: the entities are built
// with the tag crdtsdk (see entities.go).
var ErrNoCRDTSDK = errors.New("the chat's entities need the SDK's CRDT API: build with -tags crdtsdk")

// Entities returns ErrNoCRDTSDK.
func Entities() ([]sdk.Entity, error) { return nil, ErrNoCRDTSDK }
