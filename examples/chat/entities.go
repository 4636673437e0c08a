package chat

import "github.com/jetstate/jetstate/sdk"

// Entities returns the chat's two entities, Presence and Friends, to pass to sdk.New.
func Entities() ([]sdk.Entity, error) {
	return []sdk.Entity{Presence(), Friends()}, nil
}
