package pigeon

import (
	"context"
	"sync"
)

// ctxUnsubscribers ends actor subscriptions when their context ends, and
// forgets all of them at close (the stopping actor then ends them). Its
// zero value is ready; safe for concurrent use.
type ctxUnsubscribers struct {
	mu     sync.Mutex
	stops  map[uint64]func() bool
	closed bool
}

// add arranges for unsubscribe to run once ctx ends. After close it does
// nothing: the subscription ends with its actor.
func (u *ctxUnsubscribers) add(ctx context.Context, id uint64, unsubscribe func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	if u.stops == nil {
		u.stops = map[uint64]func() bool{}
	}
	u.stops[id] = context.AfterFunc(ctx, func() {
		u.mu.Lock()
		delete(u.stops, id)
		u.mu.Unlock()
		unsubscribe()
	})
}

// close cancels every pending unsubscribe; later adds are ignored.
func (u *ctxUnsubscribers) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for id, stop := range u.stops {
		stop()
		delete(u.stops, id)
	}
}
