package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/jetstate/jetstate/streams"
)

// maxEvents bounds the events an entity's page shows: the latest ones.
const maxEvents = 500

// Event is one journal event as a page shows it.
type Event struct {
	Seq, StreamSeq uint64
	Time           string
	Data           Decoded
}

type entityView struct {
	layout
	Type, Key   string
	Kind        string
	Known       bool // the type is the function's
	Events      []Event
	Total       uint64 // events in the journal
	Shown       int
	Snapshot    *snapshotView
	Value       *Decoded
	ValueRev    uint64
	Follow      followView
	TypeChoices []string
	DefaultType string // the finder's
}

type snapshotView struct {
	Seq  uint64
	Data Decoded
}

// followView is the poller that asks for events after the last one shown.
type followView struct {
	URL      string
	Interval string // htmx trigger, "every 2s"
}

// entityRequest reads and checks the type and key of an entity page.
func (c *Console) entityRequest(r *http.Request) (streams.Config, info, streams.Entity, EntityType, error) {
	storage, err := c.storage(r)
	if err != nil {
		return storage, info{}, streams.Entity{}, EntityType{}, err
	}
	q := r.URL.Query()
	e := streams.Entity{Type: strings.TrimSpace(q.Get("type")), Key: q.Get("key")}
	in, err := c.info(r.Context(), storage)
	if err != nil {
		return storage, in, e, EntityType{}, err
	}
	switch {
	case e.Type == "":
		return storage, in, e, EntityType{}, fmt.Errorf("%w: choose an entity type", ErrBadInput)
	case !q.Has("key") || e.Key == "":
		return storage, in, e, EntityType{}, fmt.Errorf("%w: enter the key of the %s entity to show (a cart's key is its user id)", ErrBadInput, e.Type)
	}
	if err := e.Validate(); err != nil {
		return storage, in, e, EntityType{}, fmt.Errorf("entity %.64q: %w", e.Key, err)
	}
	t, ok := in.typeOf(e.Type)
	if !ok {
		var known []string
		for _, t := range in.types() {
			if t.Browsable {
				known = append(known, strconv.Quote(t.PersistenceID))
			}
		}
		return storage, in, e, t, fmt.Errorf("%w: service %s has no event-sourced or value entity type %q (it has %s)",
			ErrUnknownType, storage.Service, e.Type, strings.Join(known, ", "))
	}
	return storage, in, e, t, nil
}

// entityPage shows an entity's events, snapshot and value.
func (c *Console) entityPage(w http.ResponseWriter, r *http.Request) error {
	storage, in, e, t, err := c.entityRequest(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	v := entityView{layout: c.layout(r, storage.Service, "service"), Type: e.Type, Key: e.Key, Kind: t.Kind, Known: in.Model != nil,
		TypeChoices: typeChoices(in, nil), DefaultType: e.Type}
	j, err := streams.NewJournal(c.js, storage)
	if err != nil {
		return err
	}
	from, err := j.Tail(ctx, e, maxEvents) // not the whole journal of a long-lived entity
	if err != nil {
		return err
	}
	var last streams.Version
	for rec, err := range j.Read(ctx, e, from) {
		if err != nil {
			return err
		}
		v.Events = append(v.Events, Event{Seq: rec.Seq, StreamSeq: rec.StreamSeq, Time: rec.Time.UTC().Format("2006-01-02 15:04:05.000"), Data: in.Resolver.decode(rec.Type, rec.Data)})
		if len(v.Events) > maxEvents {
			v.Events = v.Events[1:]
		}
		last = rec.Version
	}
	v.Total, v.Shown = last.Seq, len(v.Events)
	v.Follow = c.follow(storage, e, last)
	if t.Kind != "value" {
		snaps, err := streams.NewSnapshots(ctx, c.js, storage)
		if err != nil {
			return err
		}
		snap, found, err := snaps.Load(ctx, e)
		if err != nil {
			return err
		}
		if found {
			v.Snapshot = &snapshotView{Seq: snap.Seq, Data: in.Resolver.decodeAny(snap.Data)}
		}
	}
	if t.Kind != "event-sourced" {
		values, err := streams.NewValues(ctx, c.js, storage)
		if err != nil {
			return err
		}
		data, rev, err := values.Get(ctx, e)
		if err != nil {
			return err
		}
		if rev > 0 {
			d := in.Resolver.decodeAny(data)
			v.Value, v.ValueRev = &d, rev
		}
	}
	c.render(w, http.StatusOK, "entity", v)
	return nil
}

func (c *Console) follow(storage streams.Config, e streams.Entity, after streams.Version) followView {
	q := url.Values{"type": {e.Type}, "key": {e.Key}, "seq": {strconv.FormatUint(after.Seq, 10)}, "after": {strconv.FormatUint(after.StreamSeq, 10)}}
	return followView{
		URL:      "/s/" + url.PathEscape(storage.Service) + "/entity/events?" + q.Encode(),
		Interval: fmt.Sprintf("every %dms", c.cfg.FollowInterval.Milliseconds()),
	}
}

type eventsView struct {
	Events []Event
	Follow followView
	Total  uint64
}

// entityEvents answers the entity page's poll: the events after the
// position it names as table rows, with the poller for the next ones
// (out of band); 204 when there are none.
func (c *Console) entityEvents(w http.ResponseWriter, r *http.Request) error {
	storage, in, e, _, err := c.entityRequest(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after streams.Version
	if after.Seq, err = strconv.ParseUint(q.Get("seq"), 10, 64); err != nil {
		return fmt.Errorf("%w: seq %q", ErrBadInput, q.Get("seq"))
	}
	if after.StreamSeq, err = strconv.ParseUint(q.Get("after"), 10, 64); err != nil {
		return fmt.Errorf("%w: after %q", ErrBadInput, q.Get("after"))
	}
	j, err := streams.NewJournal(c.js, storage)
	if err != nil {
		return err
	}
	var v eventsView
	last := after
	for rec, err := range j.Read(r.Context(), e, after) {
		if err != nil {
			return err
		}
		v.Events = append(v.Events, Event{Seq: rec.Seq, StreamSeq: rec.StreamSeq, Time: rec.Time.UTC().Format("2006-01-02 15:04:05.000"), Data: in.Resolver.decode(rec.Type, rec.Data)})
		if len(v.Events) > maxEvents {
			v.Events = v.Events[1:]
		}
		last = rec.Version
	}
	if len(v.Events) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	v.Follow, v.Total = c.follow(storage, e, last), last.Seq
	c.renderFragment(w, "entity", "new-events", v)
	return nil
}
