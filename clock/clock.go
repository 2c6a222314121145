// Package clock is pigeon's one time source: every part of a client that
// reads the time or waits (token expiry and refresh back-off, HTTP retry
// waits and Retry-After dates, socket reconnects, pings and ack timeouts)
// takes a Clock, and pigeon.WithClock injects one into all of them.
// package transport/ws/wstest has a fake Clock that tests move by hand.
package clock

import (
	"context"
	"time"
)

// Clock reads the time and schedules calls. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or the goroutine that moves a
	// fake clock) once d has elapsed, unless the timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did so.
	Stop() bool
}

// Real returns the Clock of package time.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// NowFunc returns a Clock that reads the time from now and waits with the
// timers of package time: for a caller that shifts the hour (a skewed
// clock, a fixed date) but wants waits to pass in real time. A nil now
// means time.Now.
func NowFunc(now func() time.Time) Clock {
	if now == nil {
		return realClock{}
	}
	return nowFunc(now)
}

type nowFunc func() time.Time

func (f nowFunc) Now() time.Time                           { return f() }
func (nowFunc) AfterFunc(d time.Duration, fn func()) Timer { return time.AfterFunc(d, fn) }

// Wait waits d on c, or until ctx ends (then it returns context.Cause(ctx)
// unless that is plain cancellation, which returns ctx.Err()). A d of zero
// or less returns at once (nil unless ctx has ended). The timer is stopped
// before Wait returns, so nothing is left behind.
func Wait(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	fired := make(chan struct{})
	t := c.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
