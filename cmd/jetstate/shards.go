package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
)

// shardsConfig is what `jetstate shards` needs.
type shardsConfig struct {
	NATS    natsFlags
	Storage streams.Config
}

func parseShards(args []string, getenv func(string) string, out io.Writer) (shardsConfig, error) {
	env := envLookup(getenv)
	var c shardsConfig
	fs := flag.NewFlagSet("shards", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: jetstate shards [flags]\n\nShows a service's live sidecars and which shards each owns.\n\n")
		fs.PrintDefaults()
	}
	c.NATS.register(fs, env)
	fs.StringVar(&c.Storage.Service, "service", env("JETSTATE_SERVICE", ""), "service name [JETSTATE_SERVICE] (required)")
	fs.StringVar(&c.Storage.Prefix, "prefix", env("JETSTATE_PREFIX", ""), "subject and stream prefix [JETSTATE_PREFIX] (default jetstate)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Storage.Validate()
}

func runShards(ctx context.Context, c shardsConfig, out io.Writer) error {
	nc, err := c.NATS.connect(ctx, "jetstate shards", false)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	own, err := streams.NewOwnership(ctx, js, c.Storage)
	if err != nil {
		return err
	}
	w, err := own.Watch(ctx)
	if err != nil {
		return err
	}
	select {
	case <-w.Ready():
	case <-ctx.Done():
		return fmt.Errorf("read the shard table: %w", ctx.Err())
	}
	view, _ := w.View()
	printShards(out, c.Storage.Service, own, view)
	return nil
}

// printShards writes the members, their shard counts and ranges, and the
// shards nobody live owns.
func printShards(out io.Writer, service string, own *streams.Ownership, view streams.View) {
	fmt.Fprintf(out, "service %s: %d shards, member TTL %v, %d live sidecars\n\n", service, own.Shards(), own.MemberTTL(), len(view.Members))
	byOwner := map[string][]int{}
	for shard, o := range view.Owners {
		owner := o.Member
		if _, live := view.Members[owner]; !live {
			owner = ""
		}
		byOwner[owner] = append(byOwner[owner], shard)
	}
	members := make([]string, 0, len(view.Members))
	for m := range view.Members {
		members = append(members, m)
	}
	slices.Sort(members)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSHARDS\tSTARTED\tVERSION\tOWNS")
	for _, m := range members {
		var info shard.MemberInfo
		_ = json.Unmarshal(view.Members[m], &info)
		started := ""
		if !info.Started.IsZero() {
			started = info.Started.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m, len(byOwner[m]), started, info.Version, streams.ShardRanges(byOwner[m], ","))
	}
	if free := byOwner[""]; len(free) > 0 {
		fmt.Fprintf(tw, "(no live owner)\t%d\t\t\t%s\n", len(free), streams.ShardRanges(free, ","))
	}
	tw.Flush()
}
