// Package wstest has test doubles for package ws: a fake Clock.
package wstest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/apppigeon/pigeon/transport/ws"
)

// Clock is a fake ws.Clock: time stands still until Advance moves it, and
// due timers fire in Advance's goroutine, in deadline order. Safe for
// concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever timers change
}

var _ ws.Clock = (*Clock)(nil)

// NewClock returns a fake clock set to start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{})}
}

type fakeTimer struct {
	c       *Clock
	at      time.Time
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			t.stopped = true
			t.c.notifyLocked()
			return true
		}
	}
	return false
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) ws.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), d: d, f: f}
	c.timers = append(c.timers, t)
	c.notifyLocked()
	return t
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves the clock by d and runs every timer that falls due, in
// deadline order, in the caller's goroutine.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		if len(c.timers) == 0 || c.timers[0].at.After(target) {
			c.now = target
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.notifyLocked()
		c.mu.Unlock()
		t.f()
	}
}

// Pending returns the original durations of the timers not yet fired nor
// stopped (in no particular order).
func (c *Clock) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, 0, len(c.timers))
	for _, t := range c.timers {
		out = append(out, t.d)
	}
	return out
}

// WaitFor blocks until cond(Pending()) is true or ctx ends; it returns
// ctx.Err() in the latter case. Use it to wait until code under test has
// scheduled its timers before calling Advance.
func (c *Clock) WaitFor(ctx context.Context, cond func(pending []time.Duration) bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond(c.Pending()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitTimers blocks until at least n timers are pending or ctx ends.
func (c *Clock) WaitTimers(ctx context.Context, n int) error {
	return c.WaitFor(ctx, func(p []time.Duration) bool { return len(p) >= n })
}
