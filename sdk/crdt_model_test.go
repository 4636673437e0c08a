package sdk_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// The CRDT model entity, implemented with the sdk the way a user would, after the TCK's
// CrdtTckModel: the entity id's prefix chooses the CRDT type, the reply renders the state.

const (
	crdtModel = "jetstate.sdk.testmodel.CrdtModel"
	crdtTwo   = "jetstate.sdk.testmodel.CrdtTwo"
)

// crdtEntity is the model's per-entity object: the kind of CRDT its id asks for.
type crdtEntity struct{ kind string }

func newCrdtEntity(id string) *crdtEntity { return &crdtEntity{kind: kindOf(id)} }

// kindOf is the CRDT type a prefix names: "GSet-1" -> "GSet".
func kindOf(id string) string { k, _, _ := strings.Cut(id, "-"); return k }

func crdtModelEntity(cfg sdk.CrdtConfig) *sdk.Crdt[*crdtEntity] {
	if cfg.ServiceName == "" {
		cfg.ServiceName = crdtModel
	}
	c := sdk.NewCrdt(cfg, newCrdtEntity)
	sdk.HandleCrdtCommand(c, "Process", (*crdtEntity).process)
	sdk.HandleCrdtStreamed(c, "ProcessStreamed", (*crdtEntity).processStreamed)
	return c
}

func crdtTwoEntity() *sdk.Crdt[*crdtEntity] {
	c := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: crdtTwo}, newCrdtEntity)
	sdk.HandleCrdtCommand(c, "Call", func(*crdtEntity, *sdk.CrdtContext, *tm.CrdtRequest) (*tm.Response, error) {
		return &tm.Response{}, nil
	})
	return c
}

func newByKind(kind string) sdk.CRDT {
	switch kind {
	case "GCounter":
		return sdk.NewGCounter()
	case "PNCounter":
		return sdk.NewPNCounter()
	case "GSet":
		return sdk.NewGSet()
	case "ORSet":
		return sdk.NewORSet()
	case "LWWRegister":
		return sdk.NewLWWRegister(sdk.String(""))
	case "Flag":
		return sdk.NewFlag()
	case "ORMap":
		return sdk.NewORMap()
	case "Vote":
		return sdk.NewVote()
	}
	return nil
}

// render is the state as the model replies it; no state renders as the empty value.
func render(v sdk.CRDT, kind string) string {
	if v == nil {
		if kind == "LWWRegister" {
			return ""
		}
		v = newByKind(kind)
	}
	strs := func(as []*anypb.Any) string {
		var out []string
		for _, a := range as {
			s, _ := sdk.StringValue(a)
			out = append(out, s)
		}
		return "[" + strings.Join(out, ",") + "]"
	}
	switch v := v.(type) {
	case *sdk.GCounter:
		return strconv.FormatUint(v.Value(), 10)
	case *sdk.PNCounter:
		return strconv.FormatInt(v.Value(), 10)
	case *sdk.GSet:
		return strs(v.Elements())
	case *sdk.ORSet:
		return strs(v.Elements())
	case *sdk.LWWRegister:
		s, _ := sdk.StringValue(v.Value())
		return s
	case *sdk.Flag:
		return strconv.FormatBool(v.Value())
	case *sdk.ORMap:
		var out []string
		for _, k := range v.Keys() {
			s, _ := sdk.StringValue(k)
			out = append(out, s+":"+render(v.Get(k), kindOf(s)))
		}
		return "{" + strings.Join(out, ",") + "}"
	case *sdk.Vote:
		return fmt.Sprintf("%t %d %d", v.SelfVote(), v.VotesFor(), v.Voters())
	}
	return fmt.Sprintf("unknown %T", v)
}

// applyUpdate changes the state, creating it if there is none.
func applyUpdate(ctx *sdk.CrdtContext, kind string, u *tm.CrdtUpdate) error {
	if ctx.State() == nil {
		ctx.SetState(newByKind(kind))
	}
	if ctx.State() == nil {
		return nil // SetState failed the command
	}
	ctx.WriteConsistency(sdk.WriteConsistency(u.GetWriteConsistency()))
	return updateCRDT(ctx.State(), u)
}

var errWrongType = errors.New("update of another CRDT type")

func updateCRDT(v sdk.CRDT, u *tm.CrdtUpdate) error {
	switch x := u.GetUpdate().(type) {
	case *tm.CrdtUpdate_GcounterIncrement:
		c, ok := v.(*sdk.GCounter)
		if !ok {
			return errWrongType
		}
		c.Increment(x.GcounterIncrement)
	case *tm.CrdtUpdate_PncounterChange:
		c, ok := v.(*sdk.PNCounter)
		if !ok {
			return errWrongType
		}
		c.Increment(x.PncounterChange)
	case *tm.CrdtUpdate_GsetAdd:
		s, ok := v.(*sdk.GSet)
		if !ok {
			return errWrongType
		}
		s.Add(sdk.String(x.GsetAdd))
	case *tm.CrdtUpdate_Orset:
		s, ok := v.(*sdk.ORSet)
		if !ok {
			return errWrongType
		}
		switch a := x.Orset.GetAction().(type) {
		case *tm.SetUpdate_Add:
			s.Add(sdk.String(a.Add))
		case *tm.SetUpdate_Remove:
			s.Remove(sdk.String(a.Remove))
		case *tm.SetUpdate_Clear:
			s.Clear()
		}
	case *tm.CrdtUpdate_Lwwregister:
		r, ok := v.(*sdk.LWWRegister)
		if !ok {
			return errWrongType
		}
		r.SetWithClock(sdk.String(x.Lwwregister.GetValue()), sdk.Clock(x.Lwwregister.GetClock()), x.Lwwregister.GetCustomClockValue())
	case *tm.CrdtUpdate_FlagEnable:
		f, ok := v.(*sdk.Flag)
		if !ok {
			return errWrongType
		}
		if x.FlagEnable {
			f.Enable()
		}
	case *tm.CrdtUpdate_Ormap:
		m, ok := v.(*sdk.ORMap)
		if !ok {
			return errWrongType
		}
		key := x.Ormap.GetKey()
		create := func() sdk.CRDT { return newByKind(kindOf(key)) }
		switch a := x.Ormap.GetAction().(type) {
		case *tm.MapUpdate_Update:
			return updateCRDT(m.GetOrCreate(sdk.String(key), create), a.Update)
		case *tm.MapUpdate_Add:
			m.GetOrCreate(sdk.String(key), create)
		case *tm.MapUpdate_Remove:
			m.Remove(sdk.String(key))
		case *tm.MapUpdate_Clear:
			m.Clear()
		}
	case *tm.CrdtUpdate_SelfVote:
		vote, ok := v.(*sdk.Vote)
		if !ok {
			return errWrongType
		}
		vote.Vote(x.SelfVote)
	}
	return nil
}

func (e *crdtEntity) process(ctx *sdk.CrdtContext, r *tm.CrdtRequest) (*tm.Response, error) {
	if e.kind == "LWWRegister" && ctx.State() == nil {
		ctx.SetState(sdk.NewLWWRegister(sdk.String(""))) // the first access creates the register
	}
	forwarded := false
	var rendered *string
	for _, a := range r.GetActions() {
		switch a := a.GetAction().(type) {
		case *tm.CrdtRequestAction_Update:
			if err := applyUpdate(ctx, e.kind, a.Update); err != nil {
				return nil, err
			}
		case *tm.CrdtRequestAction_Delete:
			s := render(ctx.State(), e.kind)
			rendered = &s
			ctx.Delete()
		case *tm.CrdtRequestAction_Forward:
			ctx.Forward(crdtTwo, "Call", &tm.CrdtRequest{Id: a.Forward.GetId()})
			forwarded = true
		case *tm.CrdtRequestAction_Effect:
			ctx.SideEffect(crdtTwo, "Call", &tm.CrdtRequest{Id: a.Effect.GetId()}, a.Effect.GetSynchronous())
		case *tm.CrdtRequestAction_Fail:
			ctx.Fail(a.Fail.GetMessage())
		case *tm.CrdtRequestAction_Error:
			return nil, errors.New(a.Error.GetMessage())
		case *tm.CrdtRequestAction_Panic:
			panic(a.Panic.GetMessage())
		}
	}
	if forwarded {
		return nil, nil
	}
	if rendered == nil {
		s := render(ctx.State(), e.kind)
		rendered = &s
	}
	return &tm.Response{Message: *rendered}, nil
}

func (e *crdtEntity) processStreamed(ctx *sdk.CrdtStreamContext[*tm.Response], r *tm.CrdtStreamedRequest) (*tm.Response, error) {
	if u := r.GetInitialUpdate(); u != nil {
		if err := applyUpdate(ctx.CrdtContext, e.kind, u); err != nil {
			return nil, err
		}
	}
	ctx.OnChange(func(c *sdk.CrdtContext) (*tm.Response, bool, error) {
		for _, eff := range r.GetEffects() {
			c.SideEffect(crdtTwo, "Call", &tm.CrdtRequest{Id: eff.GetId()}, eff.GetSynchronous())
		}
		if r.GetEmpty() {
			return nil, false, nil
		}
		s := render(c.State(), e.kind)
		return &tm.Response{Message: s}, r.GetEndState() != "" && s == r.GetEndState(), nil
	})
	if u := r.GetCancelUpdate(); u != nil {
		ctx.OnCancel(func(c *sdk.CrdtContext) error { return applyUpdate(c, e.kind, u) })
	}
	if r.GetEmpty() {
		return nil, nil
	}
	return &tm.Response{Message: render(ctx.State(), e.kind)}, nil
}
