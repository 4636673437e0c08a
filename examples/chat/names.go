package chat

// Names the proxy sees in discovery.
const (
	PresenceService       = "jetstate.examples.chat.Presence"
	PresencePersistenceID = "presence"
	FriendsService        = "jetstate.examples.chat.Friends"
	FriendsPersistenceID  = "friends"
)
