package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	loadpb "github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
)

// info is what the console knows of a service's function: its discovery
// answer as a sidecar stored it (Model nil if none was stored or it does
// not build) and the resolver for its payloads.
type info struct {
	Model    *model.Model
	Problem  string // why Model is nil
	Resolver *resolver
}

var allEntityTypes = []string{model.EventSourced, model.ValueEntity, model.CRDT, model.Action}

// info reads the service's stored discovery answer.
func (c *Console) info(ctx context.Context, storage streams.Config) (info, error) {
	var in info
	d, err := streams.NewDiscovery(ctx, c.js, storage)
	var spec []byte
	found := false
	switch {
	case errors.Is(err, streams.ErrStreamNotFound):
		in.Problem = "the service has no discovery bucket (provisioned by an older jetstate)"
	case err != nil:
		return in, err
	default:
		if spec, found, err = d.Get(ctx); err != nil {
			return in, err
		}
		if !found {
			in.Problem = "no sidecar of the service has stored its function's discovery answer yet"
		}
	}
	if found {
		var es cloudstate.EntitySpec
		if err := proto.Unmarshal(spec, &es); err != nil {
			in.Problem = "the stored discovery answer does not parse: " + err.Error()
		} else if m, err := model.BuildModel(&es, allEntityTypes); err != nil {
			in.Problem = "the stored discovery answer does not build: " + err.Error()
		} else {
			in.Model = m
		}
	}
	var r *resolver
	if in.Model != nil {
		r, err = newResolver(in.Model.Files, c.cfg.Descriptors)
	} else {
		r, err = newResolver(nil, c.cfg.Descriptors)
	}
	if err != nil {
		return in, err // checked by Validate: does not happen
	}
	in.Resolver = r
	return in, nil
}

// EntityType is one entity type of the service's function.
type EntityType struct {
	PersistenceID string
	Kind          string // "event-sourced", "value", "CRDT", "action"
	Service       string // the gRPC service
	Methods       []string
	Browsable     bool // has a journal or a value to show
}

func kindOf(entityType string) string {
	switch entityType {
	case model.EventSourced:
		return "event-sourced"
	case model.ValueEntity:
		return "value"
	case model.CRDT:
		return "CRDT"
	case model.Action:
		return "action"
	}
	return entityType
}

// types lists the function's entity types, browsable ones first.
func (in info) types() []EntityType {
	if in.Model == nil {
		return nil
	}
	var out []EntityType
	for _, svc := range in.Model.Services {
		t := EntityType{PersistenceID: svc.PersistenceID, Kind: kindOf(svc.EntityType), Service: string(svc.Desc.FullName()),
			Browsable: svc.EntityType == model.EventSourced || svc.EntityType == model.ValueEntity}
		for name, m := range svc.Methods {
			sig := fmt.Sprintf("%s(%s) returns (%s)", name, m.Desc.Input().FullName(), m.Desc.Output().FullName())
			if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
				sig += " (streamed)"
			}
			t.Methods = append(t.Methods, sig)
		}
		slices.Sort(t.Methods)
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b EntityType) int {
		if a.Browsable != b.Browsable {
			if a.Browsable {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Service, b.Service)
	})
	return out
}

// typeOf finds a persistence id among the browsable types: ok false when
// the model is known and has no such type.
func (in info) typeOf(pid string) (EntityType, bool) {
	for _, t := range in.types() {
		if t.PersistenceID == pid && t.Browsable {
			return t, true
		}
	}
	return EntityType{}, in.Model == nil
}

// Member is one live sidecar.
type Member struct {
	ID      string
	Host    string
	Version string
	Started time.Time
	Shards  int
	Owns    string
	Load    *loadReport
}

// loadReport is a sidecar's latest load report and when it came.
type loadReport struct {
	Received    time.Time
	Requests    float64 // time-weighted concurrency
	Function    float64
	Journal     float64
	RequestRate float64 // per second
}

// loadReport records a report from the load subject.
func (c *Console) loadReport(msg *nats.Msg) {
	var rep loadpb.Report
	if proto.Unmarshal(msg.Data, &rep) != nil || rep.GetService() == "" || rep.GetMember() == "" {
		return
	}
	lr := loadReport{Received: time.Now(), Requests: rep.GetRequestConcurrency(), Function: rep.GetFunctionConcurrency(), Journal: rep.GetJournalConcurrency()}
	if n := rep.GetIntervalNanos(); n > 0 {
		lr.RequestRate = float64(rep.GetRequestCount()) / (float64(n) / 1e9)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.loads[rep.GetService()]
	if m == nil {
		m = map[string]loadReport{}
		c.loads[rep.GetService()] = m
	}
	m[rep.GetMember()] = lr
}

// loadOf returns a member's latest report if it is recent (a member
// reports every second).
func (c *Console) loadOf(service, member string) *loadReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	lr, ok := c.loads[service][member]
	if !ok || time.Since(lr.Received) > 10*time.Second {
		return nil
	}
	return &lr
}

// Shards is the shard table as a page shows it.
type Shards struct {
	Count     int
	MemberTTL time.Duration
	Unowned   int
	Free      string
}

// members reads the member and shard buckets.
func (c *Console) members(ctx context.Context, storage streams.Config) ([]Member, Shards, error) {
	own, err := streams.NewOwnership(ctx, c.js, storage)
	if err != nil {
		return nil, Shards{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := own.Watch(wctx)
	if err != nil {
		return nil, Shards{}, err
	}
	select {
	case <-w.Ready():
	case <-ctx.Done():
		return nil, Shards{}, fmt.Errorf("read the shard table: %w", ctx.Err())
	}
	view, _ := w.View()
	byOwner := map[string][]int{}
	for n, o := range view.Owners {
		owner := o.Member
		if _, live := view.Members[owner]; !live {
			owner = ""
		}
		byOwner[owner] = append(byOwner[owner], n)
	}
	var out []Member
	for id, raw := range view.Members {
		var mi shard.MemberInfo
		_ = json.Unmarshal(raw, &mi)
		out = append(out, Member{ID: id, Host: mi.Host, Version: mi.Version, Started: mi.Started,
			Shards: len(byOwner[id]), Owns: streams.ShardRanges(byOwner[id], ", "), Load: c.loadOf(storage.Service, id)})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, Shards{Count: own.Shards(), MemberTTL: own.MemberTTL(), Unowned: len(byOwner[""]), Free: streams.ShardRanges(byOwner[""], ", ")}, nil
}

// Recent is an entity whose journal changed lately.
type Recent struct {
	Type, Key string
	Time      time.Time
	StreamSeq uint64
}

// recentScan bounds how many journal messages the service page reads
// back to find recently changed entities.
const (
	recentScan     = 200
	recentEntities = 20
)

// recent lists the entities of the last journal messages, newest first.
func (c *Console) recent(ctx context.Context, storage streams.Config) ([]Recent, uint64, error) {
	s, err := c.js.Stream(ctx, storage.JournalStream())
	if err != nil {
		return nil, 0, err
	}
	st := s.CachedInfo().State
	seen := map[streams.Entity]bool{}
	var out []Recent
	for seq, n := st.LastSeq, 0; seq >= st.FirstSeq && seq > 0 && n < recentScan && len(out) < recentEntities; seq, n = seq-1, n+1 {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("journal message %d: %w", seq, err)
		}
		e, err := storage.ParseSubject(msg.Subject)
		if err != nil || seen[e] {
			continue
		}
		seen[e] = true
		out = append(out, Recent{Type: e.Type, Key: e.Key, Time: msg.Time, StreamSeq: seq})
	}
	return out, st.Msgs, nil
}

type serviceView struct {
	layout
	Types         []EntityType
	Problem       string
	Members       []Member
	Shards        Shards
	Recent        []Recent
	JournalMsgs   uint64
	DefaultType   string
	TypeChoices   []string
	MembersErr    string
	OtherServices []string
}

// servicePage is a service's overview and the entity finder.
func (c *Console) servicePage(w http.ResponseWriter, r *http.Request) error {
	storage, err := c.storage(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	in, err := c.info(ctx, storage)
	if err != nil {
		return err
	}
	v := serviceView{layout: c.layout(r, storage.Service, "service"), Types: in.types(), Problem: in.Problem}
	if v.Members, v.Shards, err = c.members(ctx, storage); err != nil {
		v.MembersErr = err.Error()
	}
	if v.Recent, v.JournalMsgs, err = c.recent(ctx, storage); err != nil {
		return err
	}
	v.TypeChoices = typeChoices(in, v.Recent)
	if len(v.TypeChoices) > 0 {
		v.DefaultType = v.TypeChoices[0]
	}
	c.render(w, http.StatusOK, "service", v)
	return nil
}

// typeChoices are the entity types the finder offers: the function's
// browsable ones, else those seen in the journal.
func typeChoices(in info, recent []Recent) []string {
	var out []string
	for _, t := range in.types() {
		if t.Browsable {
			out = append(out, t.PersistenceID)
		}
	}
	if in.Model != nil {
		return out
	}
	for _, r := range recent {
		if !slices.Contains(out, r.Type) {
			out = append(out, r.Type)
		}
	}
	return out
}
