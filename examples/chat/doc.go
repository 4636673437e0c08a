// Package chat is the CloudState chat sample written with the jetstate Go SDK: two CRDT
// entities per user, the gRPC services jetstate.examples.chat.Presence and
// jetstate.examples.chat.Friends of chat.proto, each method with a google.api.http rule so that
// a browser calls them as HTTP/JSON through the sidecar.
//
// Presence keeps a Vote per user. Connect is a long-lived server stream: while at least one
// Connect stream of a user is open on a sidecar replica, that replica's vote is true (the user
// function counts the streams per entity beside the CRDT; the proxy runs one entity instance per
// replica, so there is one voter per replica); when the last one is cancelled the vote is
// withdrawn. Monitor sends whether at least one replica votes true, then every change of it.
//
// Friends keeps an ORSet of friend names per user: Add, Remove, List, and Watch, which sends the
// list then every change of it.
//
// Package web serves the chat's page and passes its API calls on to the sidecar; cmd/chat is the
// runnable user function with the page.
package chat

//go:generate go tool -modfile=../../tools/buf/go.mod buf generate ../.. --config buf.config.yaml --template buf.gen.yaml --path chat.proto
