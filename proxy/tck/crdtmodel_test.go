package tck_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	crmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/crdt"
)

const (
	crModel      = "cloudstate.tck.model.crdt.CrdtTckModel"
	crTwo        = "cloudstate.tck.model.crdt.CrdtTwo"
	crConfigured = "cloudstate.tck.model.crdt.CrdtConfigured"
)

// crdtModel is the CRDT TCK model, speaking the CRDT protocol directly.
// Each stream holds the current value of one entity, of the type named by
// the entity id's prefix (GCounter-, PNCounter-, ..., Vote-). It applies the
// sidecar's deltas (init, delta, delete) to it; a command runs its actions
// on it and replies with the state and at most one state action: the net
// delta of its updates (sets sorted), or the delete. Streamed calls are
// subscriptions: the state is streamed after every later change. Commands
// are answered one at a time, in order.
//
// CrdtTwo replies with an empty Response (deleting its entity when asked);
// CrdtConfigured with an empty Response.
type crdtModel struct {
	crdt.UnimplementedCrdtServer
}

// The kinds of value, as the entity id and ORMap key prefixes name them.
const (
	kGCounter    = "GCounter"
	kPNCounter   = "PNCounter"
	kGSet        = "GSet"
	kORSet       = "ORSet"
	kLWWRegister = "LWWRegister"
	kFlag        = "Flag"
	kORMap       = "ORMap"
	kVote        = "Vote"
)

// kindOf is the kind an entity id or map key names, "" for none.
func kindOf(id string) string {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case kGCounter, kPNCounter, kGSet, kORSet, kLWWRegister, kFlag, kORMap, kVote:
		return prefix
	}
	return ""
}

// crValue is the current value of one CRDT, as the function sees it, plus
// what the running command did that a diff cannot tell (pending).
type crValue struct {
	kind     string
	g        uint64              // GCounter
	pn       int64               // PNCounter
	elems    map[string]bool     // GSet, ORSet
	reg      string              // LWWRegister
	exists   bool                // LWWRegister: set by a delta or a command
	flag     bool                // Flag
	entries  map[string]*crValue // ORMap
	self     bool                // Vote
	votesFor int32
	voters   int32

	pending pending
}

// pending is what the running command did beyond the value's change.
type pending struct {
	cleared bool            // ORSet, ORMap: a clear ran
	removed map[string]bool // ORMap: keys removed (an entry re-added is new)
	set     *crmodel.LWWRegisterClock
}

func newValue(kind string) *crValue {
	return &crValue{kind: kind, elems: map[string]bool{}, entries: map[string]*crValue{}, voters: 1}
}

func (v *crValue) clone() *crValue {
	c := *v
	c.elems = maps.Clone(v.elems)
	c.entries = map[string]*crValue{}
	for k, e := range v.entries {
		c.entries[k] = e.clone()
	}
	c.pending = pending{}
	return &c
}

func (v *crValue) resetPending() {
	v.pending = pending{}
	for _, e := range v.entries {
		e.resetPending()
	}
}

// primitive is a string as the CloudState primitive convention wraps it
// (p.cloudstate.io/string, the string in field 1; "" is empty bytes).
func primitive(s string) *anypb.Any {
	var b []byte
	if s != "" {
		b = protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	return &anypb.Any{TypeUrl: "p.cloudstate.io/string", Value: b}
}

func fromPrimitive(a *anypb.Any) (string, error) {
	if a.GetTypeUrl() != "p.cloudstate.io/string" {
		return "", fmt.Errorf("element of type %q, want p.cloudstate.io/string", a.GetTypeUrl())
	}
	b, s := a.GetValue(), ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeString(b)
			if m < 0 {
				return "", protowire.ParseError(m)
			}
			s, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", protowire.ParseError(m)
		}
		b = b[m:]
	}
	return s, nil
}

func primitives(ss []string) []*anypb.Any {
	var out []*anypb.Any
	for _, s := range ss {
		out = append(out, primitive(s))
	}
	return out
}

// deltaKind is the kind a delta is for.
func deltaKind(d *crdt.CrdtDelta) string {
	switch d.GetDelta().(type) {
	case *crdt.CrdtDelta_Gcounter:
		return kGCounter
	case *crdt.CrdtDelta_Pncounter:
		return kPNCounter
	case *crdt.CrdtDelta_Gset:
		return kGSet
	case *crdt.CrdtDelta_Orset:
		return kORSet
	case *crdt.CrdtDelta_Lwwregister:
		return kLWWRegister
	case *crdt.CrdtDelta_Flag:
		return kFlag
	case *crdt.CrdtDelta_Ormap:
		return kORMap
	case *crdt.CrdtDelta_Vote:
		return kVote
	}
	return ""
}

// applyDelta applies a delta from the sidecar.
func (v *crValue) applyDelta(d *crdt.CrdtDelta) error {
	if k := deltaKind(d); k != v.kind {
		return fmt.Errorf("%s delta for a %s", k, v.kind)
	}
	switch d := d.GetDelta().(type) {
	case *crdt.CrdtDelta_Gcounter:
		v.g += d.Gcounter.GetIncrement()
	case *crdt.CrdtDelta_Pncounter:
		v.pn += d.Pncounter.GetChange()
	case *crdt.CrdtDelta_Gset:
		for _, a := range d.Gset.GetAdded() {
			s, err := fromPrimitive(a)
			if err != nil {
				return err
			}
			v.elems[s] = true
		}
	case *crdt.CrdtDelta_Orset:
		if d.Orset.GetCleared() {
			clear(v.elems)
		}
		for _, a := range d.Orset.GetRemoved() {
			s, err := fromPrimitive(a)
			if err != nil {
				return err
			}
			delete(v.elems, s)
		}
		for _, a := range d.Orset.GetAdded() {
			s, err := fromPrimitive(a)
			if err != nil {
				return err
			}
			v.elems[s] = true
		}
	case *crdt.CrdtDelta_Lwwregister:
		s, err := fromPrimitive(d.Lwwregister.GetValue())
		if err != nil {
			return err
		}
		v.reg, v.exists = s, true
	case *crdt.CrdtDelta_Flag:
		v.flag = v.flag || d.Flag.GetValue() // a flag is never switched off
	case *crdt.CrdtDelta_Ormap:
		if d.Ormap.GetCleared() {
			clear(v.entries)
		}
		for _, a := range d.Ormap.GetRemoved() {
			k, err := fromPrimitive(a)
			if err != nil {
				return err
			}
			delete(v.entries, k)
		}
		for _, e := range append(slices.Clone(d.Ormap.GetUpdated()), d.Ormap.GetAdded()...) {
			k, err := fromPrimitive(e.GetKey())
			if err != nil {
				return err
			}
			entry := v.entries[k]
			if entry == nil {
				entry = newValue(deltaKind(e.GetDelta()))
				v.entries[k] = entry
			}
			if err := entry.applyDelta(e.GetDelta()); err != nil {
				return fmt.Errorf("entry %s: %w", k, err)
			}
		}
	case *crdt.CrdtDelta_Vote:
		v.self, v.votesFor, v.voters = d.Vote.GetSelfVote(), d.Vote.GetVotesFor(), d.Vote.GetTotalVoters()
	}
	return nil
}

// applyUpdate applies a request's update, as the function's own change.
func (v *crValue) applyUpdate(u *crmodel.Update) error {
	switch u := u.GetUpdate().(type) {
	case *crmodel.Update_Gcounter:
		if v.kind == kGCounter {
			v.g += u.Gcounter.GetIncrement()
			return nil
		}
	case *crmodel.Update_Pncounter:
		if v.kind == kPNCounter {
			v.pn += u.Pncounter.GetChange()
			return nil
		}
	case *crmodel.Update_Gset:
		if v.kind == kGSet {
			v.elems[u.Gset.GetAdd()] = true
			return nil
		}
	case *crmodel.Update_Orset:
		if v.kind == kORSet {
			switch a := u.Orset.GetAction().(type) {
			case *crmodel.ORSetUpdate_Add:
				v.elems[a.Add] = true
			case *crmodel.ORSetUpdate_Remove:
				delete(v.elems, a.Remove)
			case *crmodel.ORSetUpdate_Clear:
				if a.Clear {
					clear(v.elems)
					v.pending.cleared = true
				}
			}
			return nil
		}
	case *crmodel.Update_Lwwregister:
		if v.kind == kLWWRegister {
			v.reg, v.exists = u.Lwwregister.GetValue(), true
			v.pending.set = u.Lwwregister.GetClock()
			if v.pending.set == nil {
				v.pending.set = &crmodel.LWWRegisterClock{}
			}
			return nil
		}
	case *crmodel.Update_Flag:
		if v.kind == kFlag {
			v.flag = true
			return nil
		}
	case *crmodel.Update_Ormap:
		if v.kind == kORMap {
			return v.applyMapUpdate(u.Ormap)
		}
	case *crmodel.Update_Vote:
		if v.kind == kVote {
			if self := u.Vote.GetSelfVote(); self != v.self {
				v.self = self
				if self {
					v.votesFor++
				} else {
					v.votesFor--
				}
			}
			return nil
		}
	}
	return fmt.Errorf("update %T does not apply to a %s", u.GetUpdate(), v.kind)
}

func (v *crValue) applyMapUpdate(u *crmodel.ORMapUpdate) error {
	entry := func(k string) (*crValue, error) {
		if e := v.entries[k]; e != nil {
			return e, nil
		}
		kind := kindOf(k)
		if kind == "" {
			return nil, fmt.Errorf("map key %q names no CRDT type", k)
		}
		e := newValue(kind)
		e.exists = true // an entry's register exists once added
		v.entries[k] = e
		return e, nil
	}
	switch a := u.GetAction().(type) {
	case *crmodel.ORMapUpdate_Add:
		_, err := entry(a.Add)
		return err
	case *crmodel.ORMapUpdate_Update:
		e, err := entry(a.Update.GetKey())
		if err != nil {
			return err
		}
		return e.applyUpdate(a.Update.GetUpdate())
	case *crmodel.ORMapUpdate_Remove:
		if _, ok := v.entries[a.Remove]; ok {
			delete(v.entries, a.Remove)
			if v.pending.removed == nil {
				v.pending.removed = map[string]bool{}
			}
			v.pending.removed[a.Remove] = true
		}
	case *crmodel.ORMapUpdate_Clear:
		if a.Clear {
			clear(v.entries)
			v.pending.cleared = true
		}
	}
	return nil
}

func lwwDelta(value string, clock *crmodel.LWWRegisterClock) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Lwwregister{Lwwregister: &crdt.LWWRegisterDelta{
		Value: primitive(value), Clock: crdt.CrdtClock(clock.GetClockType()), CustomClockValue: clock.GetCustomClockValue()}}}
}

// full is the whole value as one delta (a new map entry's).
func (v *crValue) full() *crdt.CrdtDelta {
	switch v.kind {
	case kGCounter:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gcounter{Gcounter: &crdt.GCounterDelta{Increment: v.g}}}
	case kPNCounter:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Pncounter{Pncounter: &crdt.PNCounterDelta{Change: v.pn}}}
	case kGSet:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gset{Gset: &crdt.GSetDelta{Added: primitives(slices.Sorted(maps.Keys(v.elems)))}}}
	case kORSet:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Orset{Orset: &crdt.ORSetDelta{Added: primitives(slices.Sorted(maps.Keys(v.elems)))}}}
	case kLWWRegister:
		return lwwDelta(v.reg, v.pending.set)
	case kFlag:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Flag{Flag: &crdt.FlagDelta{Value: v.flag}}}
	case kORMap:
		d := &crdt.ORMapDelta{}
		for _, k := range slices.Sorted(maps.Keys(v.entries)) {
			d.Added = append(d.Added, &crdt.ORMapEntryDelta{Key: primitive(k), Delta: v.entries[k].full()})
		}
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Ormap{Ormap: d}}
	case kVote:
		return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Vote{Vote: &crdt.VoteDelta{SelfVote: v.self}}}
	}
	return nil
}

// diff is the delta from before to v (v's pending says what diffing cannot
// tell), nil if none; sets and map keys sorted.
func (v *crValue) diff(before *crValue) *crdt.CrdtDelta {
	added := func() []string {
		var out []string
		for _, s := range slices.Sorted(maps.Keys(v.elems)) {
			if !before.elems[s] {
				out = append(out, s)
			}
		}
		return out
	}
	switch v.kind {
	case kGCounter:
		if v.g > before.g {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gcounter{Gcounter: &crdt.GCounterDelta{Increment: v.g - before.g}}}
		}
	case kPNCounter:
		if v.pn != before.pn {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Pncounter{Pncounter: &crdt.PNCounterDelta{Change: v.pn - before.pn}}}
		}
	case kGSet:
		if a := added(); len(a) > 0 {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gset{Gset: &crdt.GSetDelta{Added: primitives(a)}}}
		}
	case kORSet:
		if v.pending.cleared {
			d := v.full()
			d.GetOrset().Cleared = true
			return d
		}
		var removed []string
		for _, s := range slices.Sorted(maps.Keys(before.elems)) {
			if !v.elems[s] {
				removed = append(removed, s)
			}
		}
		if a := added(); len(a) > 0 || len(removed) > 0 {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Orset{Orset: &crdt.ORSetDelta{Removed: primitives(removed), Added: primitives(a)}}}
		}
	case kLWWRegister:
		if v.pending.set != nil {
			return lwwDelta(v.reg, v.pending.set)
		}
	case kFlag:
		if v.flag && !before.flag {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Flag{Flag: &crdt.FlagDelta{Value: true}}}
		}
	case kORMap:
		if v.pending.cleared {
			d := v.full()
			d.GetOrmap().Cleared = true
			return d
		}
		d := &crdt.ORMapDelta{}
		for _, k := range slices.Sorted(maps.Keys(before.entries)) {
			if v.entries[k] == nil || v.pending.removed[k] {
				d.Removed = append(d.Removed, primitive(k))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v.entries)) {
			e, old := v.entries[k], before.entries[k]
			switch {
			case old == nil || v.pending.removed[k]:
				d.Added = append(d.Added, &crdt.ORMapEntryDelta{Key: primitive(k), Delta: e.full()})
			default:
				if ed := e.diff(old); ed != nil {
					d.Updated = append(d.Updated, &crdt.ORMapEntryDelta{Key: primitive(k), Delta: ed})
				}
			}
		}
		if len(d.Removed) > 0 || len(d.Updated) > 0 || len(d.Added) > 0 {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Ormap{Ormap: d}}
		}
	case kVote:
		if v.self != before.self {
			return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Vote{Vote: &crdt.VoteDelta{SelfVote: v.self}}}
		}
	}
	return nil
}

// state is the value as the model's State (sets and entries sorted).
func (v *crValue) state() *crmodel.State {
	switch v.kind {
	case kGCounter:
		return &crmodel.State{Value: &crmodel.State_Gcounter{Gcounter: &crmodel.GCounterValue{Value: v.g}}}
	case kPNCounter:
		return &crmodel.State{Value: &crmodel.State_Pncounter{Pncounter: &crmodel.PNCounterValue{Value: v.pn}}}
	case kGSet:
		return &crmodel.State{Value: &crmodel.State_Gset{Gset: &crmodel.GSetValue{Elements: slices.Sorted(maps.Keys(v.elems))}}}
	case kORSet:
		return &crmodel.State{Value: &crmodel.State_Orset{Orset: &crmodel.ORSetValue{Elements: slices.Sorted(maps.Keys(v.elems))}}}
	case kLWWRegister:
		return &crmodel.State{Value: &crmodel.State_Lwwregister{Lwwregister: &crmodel.LWWRegisterValue{Value: v.reg}}}
	case kFlag:
		return &crmodel.State{Value: &crmodel.State_Flag{Flag: &crmodel.FlagValue{Value: v.flag}}}
	case kORMap:
		m := &crmodel.ORMapValue{}
		for _, k := range slices.Sorted(maps.Keys(v.entries)) {
			m.Entries = append(m.Entries, &crmodel.ORMapEntryValue{Key: k, Value: v.entries[k].state()})
		}
		return &crmodel.State{Value: &crmodel.State_Ormap{Ormap: m}}
	case kVote:
		return &crmodel.State{Value: &crmodel.State_Vote{Vote: &crmodel.VoteValue{SelfVote: v.self, VotesFor: v.votesFor, TotalVoters: v.voters}}}
	}
	return nil
}

// crEntity is one stream's entity.
type crEntity struct {
	service, id string
	value       *crValue // nil for CrdtTwo and CrdtConfigured
	deleted     bool
	subs        map[int64]*crmodel.StreamedRequest // open streamed calls by command id
}

func (crdtModel) Handle(stream grpc.BidiStreamingServer[crdt.CrdtStreamIn, crdt.CrdtStreamOut]) error {
	var ent *crEntity
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, ok := in.GetMessage().(*crdt.CrdtStreamIn_Init); !ok && ent == nil {
			return fmt.Errorf("%T before init", in.GetMessage())
		}
		var out []*crdt.CrdtStreamOut
		switch msg := in.GetMessage().(type) {
		case *crdt.CrdtStreamIn_Init:
			if ent != nil {
				return errors.New("second init")
			}
			ent = &crEntity{service: msg.Init.GetServiceName(), id: msg.Init.GetEntityId(), subs: map[int64]*crmodel.StreamedRequest{}}
			if ent.service == crModel {
				kind := kindOf(ent.id)
				if kind == "" {
					return fmt.Errorf("entity id %q names no CRDT type", ent.id)
				}
				ent.value = newValue(kind)
			}
			if d := msg.Init.GetDelta(); d != nil && ent.value != nil {
				if err := ent.value.applyDelta(d); err != nil {
					return fmt.Errorf("init delta: %w", err)
				}
			}
		case *crdt.CrdtStreamIn_Delta:
			if ent.value == nil {
				continue
			}
			before := ent.value.state()
			if err := ent.value.applyDelta(msg.Delta); err != nil {
				return fmt.Errorf("delta: %w", err)
			}
			if !proto.Equal(before, ent.value.state()) {
				out = ent.notify(0)
			}
		case *crdt.CrdtStreamIn_Delete:
			ent.deleted = true
		case *crdt.CrdtStreamIn_Command:
			out = ent.command(msg.Command)
		case *crdt.CrdtStreamIn_StreamCancelled:
			out = ent.cancelled(msg.StreamCancelled.GetId())
		}
		for _, o := range out {
			if err := stream.Send(o); err != nil {
				return err
			}
		}
	}
}

func crReplyOut(r *crdt.CrdtReply) *crdt.CrdtStreamOut {
	return &crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_Reply{Reply: r}}
}

func crFailureReply(id int64, desc string) *crdt.CrdtStreamOut {
	return crReplyOut(&crdt.CrdtReply{CommandId: id, ClientAction: failure(id, desc, false)})
}

// command runs one command: its reply, then the streamed messages its
// change causes.
func (e *crEntity) command(cmd *cloudstate.Command) []*crdt.CrdtStreamOut {
	id := cmd.GetId()
	if e.service != crModel {
		var req crmodel.Request
		if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
			return []*crdt.CrdtStreamOut{crFailureReply(id, err.Error())}
		}
		r := &crdt.CrdtReply{CommandId: id, ClientAction: replyOf(&crmodel.Response{})}
		for _, a := range req.GetActions() {
			if a.GetDelete() != nil {
				r.StateAction = &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Delete{Delete: &crdt.CrdtDelete{}}}
			}
		}
		return []*crdt.CrdtStreamOut{crReplyOut(r)}
	}
	if e.deleted {
		return []*crdt.CrdtStreamOut{crFailureReply(id, "entity deleted")}
	}
	v := e.value
	v.resetPending()
	before := v.clone()
	if v.kind == kLWWRegister && !v.exists { // the first access creates the register
		v.exists = true
		v.pending.set = &crmodel.LWWRegisterClock{}
	}
	r := &crdt.CrdtReply{CommandId: id}
	var consistency crmodel.UpdateWriteConsistency
	var forward *cloudstate.Forward
	deleted := false
	fail := func(desc string) []*crdt.CrdtStreamOut {
		e.value = before
		return []*crdt.CrdtStreamOut{crFailureReply(id, desc)}
	}
	update := func(u *crmodel.Update) error {
		consistency = u.GetWriteConsistency()
		return v.applyUpdate(u)
	}
	var streamed *crmodel.StreamedRequest
	switch cmd.GetName() {
	case "Process":
		var req crmodel.Request
		if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
			return fail(err.Error())
		}
		for _, a := range req.GetActions() {
			switch act := a.GetAction().(type) {
			case *crmodel.RequestAction_Update:
				if err := update(act.Update); err != nil {
					return fail(err.Error())
				}
			case *crmodel.RequestAction_Delete:
				deleted = true
			case *crmodel.RequestAction_Forward:
				forward = &cloudstate.Forward{ServiceName: crTwo, CommandName: "Call", Payload: anyOf(&crmodel.Request{Id: act.Forward.GetId()})}
			case *crmodel.RequestAction_Effect:
				r.SideEffects = append(r.SideEffects, effect(crTwo, &crmodel.Request{Id: act.Effect.GetId()}, act.Effect.GetSynchronous()))
			case *crmodel.RequestAction_Fail:
				return fail(act.Fail.GetMessage())
			}
		}
	case "ProcessStreamed":
		streamed = &crmodel.StreamedRequest{}
		if err := cmd.GetPayload().UnmarshalTo(streamed); err != nil {
			return fail(err.Error())
		}
		if !cmd.GetStreamed() {
			return fail("ProcessStreamed called unstreamed")
		}
		if u := streamed.GetInitialUpdate(); u != nil {
			if err := update(u); err != nil {
				return fail(err.Error())
			}
		}
	default:
		return fail("unknown command " + cmd.GetName())
	}
	d := v.diff(before)
	switch {
	case deleted:
		e.deleted = true
		r.StateAction = &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Delete{Delete: &crdt.CrdtDelete{}}}
		d = nil // the delete wins; the reply still carries the state
	case d != nil:
		r.StateAction = &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Update{Update: d},
			WriteConsistency: crdt.CrdtWriteConsistency(consistency)}
	}
	switch {
	case forward != nil:
		r.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: forward}}
	case streamed == nil || !streamed.GetEmpty():
		r.ClientAction = replyOf(&crmodel.Response{State: v.state()})
	}
	if streamed != nil {
		r.Streamed = true
		e.subs[id] = streamed
	}
	out := []*crdt.CrdtStreamOut{crReplyOut(r)}
	if d != nil {
		out = append(out, e.notify(id)...)
	}
	return out
}

// notify streams the current state to every open streamed call but skip
// (which has just answered); a call reaching its end state ends.
func (e *crEntity) notify(skip int64) []*crdt.CrdtStreamOut {
	var out []*crdt.CrdtStreamOut
	state := e.value.state()
	for _, id := range slices.Sorted(maps.Keys(e.subs)) {
		sub := e.subs[id]
		if id == skip || sub.GetEmpty() {
			continue
		}
		m := &crdt.CrdtStreamedMessage{CommandId: id, ClientAction: replyOf(&crmodel.Response{State: state})}
		for _, eff := range sub.GetEffects() {
			m.SideEffects = append(m.SideEffects, effect(crTwo, &crmodel.Request{Id: eff.GetId()}, eff.GetSynchronous()))
		}
		if end := sub.GetEndState(); end != nil && proto.Equal(end, state) {
			m.EndStream = true
			delete(e.subs, id)
		}
		out = append(out, &crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_StreamedMessage{StreamedMessage: m}})
	}
	return out
}

// cancelled answers the cancellation of streamed call id, applying its
// cancel_update, then streams the change to the other calls.
func (e *crEntity) cancelled(id int64) []*crdt.CrdtStreamOut {
	resp := &crdt.CrdtStreamCancelledResponse{CommandId: id}
	out := []*crdt.CrdtStreamOut{{Message: &crdt.CrdtStreamOut_StreamCancelledResponse{StreamCancelledResponse: resp}}}
	sub := e.subs[id]
	delete(e.subs, id)
	u := sub.GetCancelUpdate()
	if u == nil || e.value == nil || e.deleted {
		return out
	}
	v := e.value
	v.resetPending()
	before := v.clone()
	if err := v.applyUpdate(u); err != nil {
		e.value = before
		return out
	}
	if d := v.diff(before); d != nil {
		resp.StateAction = &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Update{Update: d},
			WriteConsistency: crdt.CrdtWriteConsistency(u.GetWriteConsistency())}
		out = append(out, e.notify(id)...)
	}
	return out
}
