package streams

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Liveness of a long-lived client's connection: it pings the server every
// ClientPingInterval and gives the connection up (and reconnects) after
// ClientMaxPingsOut unanswered pings, so a half-open connection (the peer
// gone without a close) is noticed within seconds, about a member TTL,
// instead of nats.go's default of 4 to 6 minutes, during which every
// command would time out and the shard lease stay lapsed.
const (
	ClientPingInterval = 2 * time.Second
	ClientMaxPingsOut  = 3
)

// ClientOptions are the connection options of a long-lived jetstate client
// (the sidecar, a projector): named, reconnecting for ever, pinging as
// above, and reporting the connection's asynchronous errors and
// reconnections to log (nil: discarded) instead of nats.go's stderr lines.
func ClientOptions(name string, log *slog.Logger) []nats.Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.PingInterval(ClientPingInterval),
		nats.MaxPingsOutstanding(ClientMaxPingsOut),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats", "subject", sub.Subject, "error", err)
				return
			}
			log.Warn("nats", "error", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
}
