package crdt

import (
	"maps"

	"google.golang.org/protobuf/types/known/anypb"
)

// orKeys is the optimized add-wins observed-remove set (Bieniusa et al.
// 2012): each live element carries the dots (replica, counter) of the adds
// that put it there, at most one per replica; ctx is the causal context, a
// version vector of every dot the state has seen. Removing an element just
// drops its dots: ctx remembers them, so an older state that still has them
// cannot bring the element back. Its size is the live elements plus one
// counter per replica ever seen, whatever the history.
type orKeys struct {
	elems map[string]*orElem
	ctx   vv
}

type orElem struct {
	key  *anypb.Any
	dots vv
}

func newORKeys() orKeys { return orKeys{elems: map[string]*orElem{}, ctx: vv{}} }

// add records an add of a by replica: a new dot replaces the element's
// dots, which the context covers.
func (o *orKeys) add(replica string, a *anypb.Any) {
	o.ctx[replica]++
	o.elems[anyKey(a)] = &orElem{key: a, dots: vv{replica: o.ctx[replica]}}
}

func (o *orKeys) has(k string) bool { _, ok := o.elems[k]; return ok }

// merge keeps a dot if both sides have it or the side without it has not
// seen it (a concurrent add); a dot one side has seen but dropped was removed.
func (o *orKeys) merge(p orKeys) {
	out := make(map[string]*orElem, len(o.elems))
	for k, a := range o.elems {
		if d := survivors(a, p.elems[k], p.ctx, o.ctx); len(d) > 0 {
			out[k] = &orElem{key: a.key, dots: d}
		}
	}
	for k, b := range p.elems {
		if _, done := o.elems[k]; done {
			continue
		}
		if d := survivors(nil, b, p.ctx, o.ctx); len(d) > 0 {
			out[k] = &orElem{key: b.key, dots: d}
		}
	}
	o.elems = out
	o.ctx.mergeMax(p.ctx)
}

func survivors(a, b *orElem, bctx, actx vv) vv {
	d := vv{}
	if a != nil {
		for r, c := range a.dots {
			if (b != nil && b.dots[r] == c) || c > bctx[r] {
				d[r] = max(d[r], c)
			}
		}
	}
	if b != nil {
		for r, c := range b.dots {
			if (a != nil && a.dots[r] == c) || c > actx[r] {
				d[r] = max(d[r], c)
			}
		}
	}
	return d
}

func (o orKeys) clone() orKeys {
	c := orKeys{elems: make(map[string]*orElem, len(o.elems)), ctx: maps.Clone(o.ctx)}
	for k, e := range o.elems {
		c.elems[k] = &orElem{key: e.key, dots: maps.Clone(e.dots)}
	}
	return c
}

func (o orKeys) sortedAnys() []*anypb.Any {
	out := make([]*anypb.Any, 0, len(o.elems))
	for _, k := range sortedKeys(o.elems) {
		out = append(out, o.elems[k].key)
	}
	return out
}
