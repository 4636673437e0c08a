package chat

import (
	"fmt"
	"slices"

	"github.com/jetstate/jetstate/sdk"
)

// Friends returns the definition of the friends entity: an ORSet of friend names per user.
func Friends() sdk.Entity {
	c := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: FriendsService, PersistenceID: FriendsPersistenceID}, newFriends)
	sdk.HandleCrdtCommand(c, "Add", (*friends).add)
	sdk.HandleCrdtCommand(c, "Remove", (*friends).remove)
	sdk.HandleCrdtCommand(c, "List", (*friends).list)
	sdk.HandleCrdtStreamed(c, "Watch", (*friends).watch)
	return c
}

// friends is one user's friends entity; all of its state is the CRDT.
type friends struct{}

func newFriends(string) *friends { return &friends{} }

func (*friends) add(ctx *sdk.CrdtContext, in *Friend) (*Empty, error) {
	switch in.GetFriend() {
	case "":
		ctx.Fail("a friend needs a name")
		return nil, nil
	case in.GetUser():
		ctx.Fail(fmt.Sprintf("%s cannot be their own friend", in.GetUser()))
		return nil, nil
	}
	set, ok := ctx.State().(*sdk.ORSet)
	if !ok {
		set = sdk.NewORSet()
		ctx.SetState(set)
	}
	set.Add(sdk.String(in.GetFriend()))
	return &Empty{}, nil
}

// remove removes the friend; removing one who is not a friend does nothing.
func (*friends) remove(ctx *sdk.CrdtContext, in *Friend) (*Empty, error) {
	if set, ok := ctx.State().(*sdk.ORSet); ok {
		set.Remove(sdk.String(in.GetFriend()))
	}
	return &Empty{}, nil
}

func (*friends) list(ctx *sdk.CrdtContext, _ *User) (*FriendsList, error) {
	return &FriendsList{Friends: names(ctx)}, nil
}

// watch sends the list, then the list again whenever it changes.
func (*friends) watch(ctx *sdk.CrdtStreamContext[*FriendsList], _ *User) (*FriendsList, error) {
	last := names(ctx.CrdtContext)
	ctx.OnChange(func(ctx *sdk.CrdtContext) (*FriendsList, bool, error) {
		now := names(ctx)
		if slices.Equal(now, last) {
			return nil, false, nil
		}
		last = now
		return &FriendsList{Friends: now}, false, nil
	})
	return &FriendsList{Friends: last}, nil
}

// names returns the friends' names, sorted. Elements that are not strings (not written by this
// function) are skipped.
func names(ctx *sdk.CrdtContext) []string {
	set, ok := ctx.State().(*sdk.ORSet)
	if !ok {
		return []string{}
	}
	out := make([]string, 0, set.Size())
	for _, e := range set.Elements() {
		if s, ok := sdk.StringValue(e); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
