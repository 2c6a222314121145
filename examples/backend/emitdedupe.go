package backend

import (
	"encoding/json"
	"sync"
)

// DefaultEmitDedupeWindow is how many emit ids the Backend remembers
// (WithEmitDedupeWindow).
const DefaultEmitDedupeWindow = 1 << 16

// emitDedupe remembers the last window emit ids (payload `emitId`, scoped
// to the sender) and what each one produced, so an emit a client resends
// after a reconnect — because it never saw the ack — is acknowledged again
// with the first outcome instead of being published twice. Safe for
// concurrent use: the same id arriving on two connections at once is
// published once; the second waits for the first's outcome.
type emitDedupe struct {
	mu    sync.Mutex
	byKey map[string]*emitOutcome
	ring  []string // keys in arrival order; the oldest is forgotten first
	next  int
}

// emitOutcome is what the first emit of an id produced; done is closed
// once it is known.
type emitOutcome struct {
	done   chan struct{}
	pos    Position
	failed string // the first copy was refused with this message
}

func newEmitDedupe(window int) *emitDedupe {
	return &emitDedupe{byKey: make(map[string]*emitOutcome, window), ring: make([]string, window)}
}

// claim returns the outcome record of key and whether the caller is the
// first to see it (and must publish, then settle it).
func (d *emitDedupe) claim(key string) (*emitOutcome, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if o, ok := d.byKey[key]; ok {
		return o, false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.byKey, old)
	}
	d.ring[d.next] = key
	d.next = (d.next + 1) % len(d.ring)
	o := &emitOutcome{done: make(chan struct{})}
	d.byKey[key] = o
	return o, true
}

// forget drops key (its first emit was refused: a resend may try again).
func (d *emitDedupe) forget(key string, o *emitOutcome) {
	d.mu.Lock()
	if d.byKey[key] == o {
		delete(d.byKey, key)
	}
	d.mu.Unlock()
}

// handleEmitOnce publishes an emit carrying an emitId at most once per
// sender and id, and acks every copy with the first copy's position.
func (c *wsConn) handleEmitOnce(f *inFrame, p *emitPayload, rm *room) {
	b := c.b
	key := c.who.id + "\x00" + p.EmitID
	o, first := b.emitIDs.claim(key)
	if !first {
		select {
		case <-o.done:
		case <-c.closing:
			return
		case <-b.closeCtx.Done():
			return
		}
		if o.failed != "" {
			c.sendError(f.ID, ErrCodeBadRequest, o.failed)
			return
		}
		b.stats.emitDuplicates.Add(1)
		c.reply(outFrame{Type: TypeAck, ID: f.ID, Payload: emitAckPayload{Channel: p.Channel, Epoch: o.pos.Epoch, Seq: o.pos.Seq, Duplicate: true}})
		return
	}
	pos, err := c.publishEmit(p, rm)
	if err != nil {
		b.emitIDs.forget(key, o)
		o.failed = err.Error()
		close(o.done)
		c.sendError(f.ID, ErrCodeBadRequest, err.Error())
		return
	}
	o.pos = pos
	close(o.done)
	c.ackEmit(f, p, pos)
}

// observeEmit reports an accepted emit to WithEmitObserver's function.
func (b *Backend) observeEmit(who principal, p *emitPayload) {
	if b.cfg.emitObserver != nil {
		b.cfg.emitObserver(EmitRecord{Sender: who.id, Channel: p.Channel, Event: p.Event, EmitID: p.EmitID, Data: append(json.RawMessage(nil), p.Data...)})
	}
}

// EmitRecord is one emit the Backend accepted and published (see
// WithEmitObserver). Data is the observer's own copy.
type EmitRecord struct {
	Sender  string // the sender's uid or ghost id
	Channel string
	Event   string
	EmitID  string // payload emitId; "" when the client sent none
	Data    json.RawMessage
}
