package entity

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/streams"
)

// publisher stores one replica's state of one CRDT entity, latest first:
// states are monotone (each includes the previous ones), so when several
// changes wait only the newest is published. Each change has a version;
// wait tells when a version is stored. Failures are retried (backing off)
// until stop, except a state too large for the store, which crashes the
// entity.
type publisher struct {
	store CRDTStore
	ent   streams.Entity
	me    string
	log   *slog.Logger
	crash func(error)

	mu   sync.Mutex
	data []byte
	ver  uint64 // version of data
	seq  uint64 // the store's sequence of the latest stored state

	stored *watermark // versions stored
	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newPublisher(store CRDTStore, ent streams.Entity, me string, log *slog.Logger, crash func(error)) *publisher {
	ctx, cancel := context.WithCancel(context.Background())
	return &publisher{
		store: store, ent: ent, me: me, log: log, crash: crash,
		stored: newWatermark(), kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// set hands over a new state and returns its version.
func (p *publisher) set(data []byte) uint64 {
	p.mu.Lock()
	p.ver++
	p.data = data
	v := p.ver
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return v
}

func (p *publisher) run() {
	defer close(p.done)
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		p.mu.Lock()
		data, ver := p.data, p.ver
		p.mu.Unlock()
		if ver > p.stored.get() {
			seq, err := p.store.Publish(p.ctx, p.ent, p.me, data)
			switch {
			case p.ctx.Err() != nil:
				return
			case streams.TooLarge(err):
				p.stored.fail(err)
				p.crash(err)
				return
			case err != nil:
				wait := bo.Next()
				p.log.Warn("publishing the CRDT state failed, retrying", "in", wait, "error", err)
				if backoff.Sleep(p.ctx, wait) != nil {
					return
				}
				continue
			}
			bo.Reset()
			p.mu.Lock()
			p.seq = max(p.seq, seq)
			p.mu.Unlock()
			p.stored.advance(ver)
			continue
		}
		select {
		case <-p.kick:
		case <-p.ctx.Done():
			return
		}
	}
}

// wait returns once version ver is stored, with the store's sequence of
// the latest stored state (which includes ver).
func (p *publisher) wait(ctx context.Context, ver uint64) (uint64, error) {
	err := p.stored.wait(ctx, ver)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq, err
}

// flush waits until the latest version is stored.
func (p *publisher) flush(ctx context.Context) (uint64, error) {
	p.mu.Lock()
	ver := p.ver
	p.mu.Unlock()
	return p.wait(ctx, ver)
}

// stop ends the publisher and waits for it.
func (p *publisher) stop() {
	p.cancel()
	<-p.done
}
