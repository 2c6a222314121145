// Package backoff is pigeon's one back-off: the refresh coordinator's
// waits after a failed refresh, a socket's reconnect delays and WithRetry's
// waits between attempts all come from a Backoff, with one jitter formula
// ("full jitter").
package backoff

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff computes the delay before attempt n (0-based): a uniformly
// random duration in [0, Cap(n)), Cap(n) = min(Max, Base·2ⁿ), so clients
// that failed together spread over the whole window instead of coming
// back together. Safe for concurrent use.
type Backoff struct {
	base, max time.Duration
	rand      func(n int64) int64
}

// New returns a Backoff from base to max (max below base is raised to
// base; a base of zero or less gives delays of 0). rnd returns a random
// number in [0, n) for n > 0 and is called from one goroutine at a time;
// nil means math/rand/v2's Int64N.
func New(base, max time.Duration, rnd func(n int64) int64) *Backoff {
	if max < base {
		max = base
	}
	if rnd == nil {
		rnd = rand.Int64N
	} else {
		var mu sync.Mutex
		f := rnd
		rnd = func(n int64) int64 {
			mu.Lock()
			defer mu.Unlock()
			return f(n)
		}
	}
	return &Backoff{base: base, max: max, rand: rnd}
}

// FromRand adapts a *rand.Rand (a seeded source, for reproducible delays)
// to New's rnd; nil gives nil.
func FromRand(r *rand.Rand) func(n int64) int64 {
	if r == nil {
		return nil
	}
	return r.Int64N
}

// Max returns the largest Cap.
func (b *Backoff) Max() time.Duration { return b.max }

// Cap returns min(Max, Base·2ⁿ), the bound of attempt n's delay.
func (b *Backoff) Cap(n int) time.Duration {
	c := b.base
	for i := 0; i < n && c < b.max; i++ {
		c *= 2
	}
	return min(c, b.max)
}

// Top returns the first attempt whose Cap is Max: the step a caller jumps
// to when walking up the steps is pointless.
func (b *Backoff) Top() int {
	n := 0
	for c := b.base; c > 0 && c < b.max; c *= 2 {
		n++
	}
	return n
}

// Delay returns attempt n's delay, uniform in [0, Cap(n)).
func (b *Backoff) Delay(n int) time.Duration {
	c := b.Cap(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(b.rand(int64(c)))
}
