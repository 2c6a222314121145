package actors

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/apppigeon/pigeon/messages"
)

// DefaultSocketStatusBuffer is a status subscription's queue capacity
// when Subscribe is given zero.
const DefaultSocketStatusBuffer = 16

// SocketStatusFeed fans the status of a socket out to subscribers. It
// outlives the SocketConn actors that publish into it (give it in
// SocketConfig.Status): the socket an owner replaces, restarts or reopens
// keeps publishing into the same feed. Only the actor incarnation that
// started last publishes; an older one that is still shutting down is
// ignored, so the stream follows the socket that is in charge.
//
// Every subscriber has its own bounded queue. When it is full the oldest
// queued status is dropped (and counted in Dropped), so the newest status
// always gets in: a reader that falls behind still ends on the state the
// socket is in, and the final SocketClosed is never lost. Publishing never
// blocks. Methods are safe for concurrent use.
type SocketStatusFeed struct {
	mu      sync.Mutex
	cur     messages.SocketStatus
	owner   uint64 // the publisher allowed to publish
	owners  uint64
	nextSub uint64
	subs    map[uint64]*SocketStatusSubscription
	closed  bool
}

// NewSocketStatusFeed returns a feed whose current status is SocketIdle.
func NewSocketStatusFeed() *SocketStatusFeed {
	return &SocketStatusFeed{subs: map[uint64]*SocketStatusSubscription{}}
}

// SocketStatusSubscription is one subscriber of a SocketStatusFeed. C
// delivers the current status first, then every transition; it is closed
// by Close, by the subscribe context's end or by the feed's Close. Methods
// are safe for concurrent use.
type SocketStatusSubscription struct {
	C <-chan messages.SocketStatus

	ch      chan messages.SocketStatus // written and closed under feed.mu
	feed    *SocketStatusFeed
	id      uint64
	dropped atomic.Uint64
	stop    func() bool // the context watch
}

// Current returns the status the socket is in.
func (f *SocketStatusFeed) Current() messages.SocketStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// Subscribe returns a subscription with a queue of buffer entries (zero or
// less means DefaultSocketStatusBuffer) holding the current status. When
// ctx ends the subscription closes. On a closed feed C is closed at once,
// after the last status.
func (f *SocketStatusFeed) Subscribe(ctx context.Context, buffer int) *SocketStatusSubscription {
	if buffer <= 0 {
		buffer = DefaultSocketStatusBuffer
	}
	ch := make(chan messages.SocketStatus, buffer)
	s := &SocketStatusSubscription{C: ch, ch: ch, feed: f}
	f.mu.Lock()
	ch <- f.cur
	if f.closed {
		close(ch)
		f.mu.Unlock()
		return s
	}
	f.nextSub++
	s.id = f.nextSub
	f.subs[s.id] = s
	f.mu.Unlock()
	s.stop = context.AfterFunc(ctx, func() { s.end() })
	return s
}

// Close ends the subscription: C is closed (what is queued stays
// readable). Idempotent.
func (s *SocketStatusSubscription) Close() {
	if s.stop != nil { // nil on a feed closed before Subscribe
		s.stop()
	}
	s.end()
}

func (s *SocketStatusSubscription) end() {
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[s.id] == s {
		delete(f.subs, s.id)
		close(s.ch)
	}
}

// Dropped counts the statuses this subscription's full queue dropped.
func (s *SocketStatusSubscription) Dropped() uint64 { return s.dropped.Load() }

// Close closes every subscription; later ones get the last status and a
// closed channel. Idempotent.
func (f *SocketStatusFeed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for id, s := range f.subs {
		delete(f.subs, id)
		close(s.ch)
	}
}

// claim makes the caller the feed's publisher and returns its token.
func (f *SocketStatusFeed) claim() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owners++
	f.owner = f.owners
	return f.owner
}

// publish records st and offers it to every subscriber, unless owner is
// no longer the feed's publisher or st is the status already current.
func (f *SocketStatusFeed) publish(owner uint64, st messages.SocketStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if owner != f.owner || f.closed || sameStatus(st, f.cur) {
		return
	}
	f.cur = st
	for _, s := range f.subs {
		for {
			select {
			case s.ch <- st:
			default:
				select {
				case <-s.ch:
					s.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
}

// sameStatus reports whether a and b say the same without comparing
// errors (an error's dynamic type may not be comparable): two statuses
// with a cause are never the same.
func sameStatus(a, b messages.SocketStatus) bool {
	return a.Err == nil && b.Err == nil && a.State == b.State && a.Attempt == b.Attempt &&
		a.Delay == b.Delay && a.Recovered == b.Recovered
}
