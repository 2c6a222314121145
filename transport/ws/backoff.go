package ws

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Default backoff bounds.
const (
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 20 * time.Second
)

// Backoff computes reconnect delays: attempt n (0-based) waits a uniformly
// random duration in [0, min(Max, Base·2ⁿ)] ("full jitter"), so that many
// clients reconnecting after the same outage spread over the window instead
// of arriving together. Safe for concurrent use.
type Backoff struct {
	base, max time.Duration
	mu        sync.Mutex
	rnd       *rand.Rand
}

// NewBackoff returns a Backoff. base ≤ 0 means DefaultBackoffBase, max ≤ 0
// means DefaultBackoffMax (max below base is raised to base). rnd is the
// randomness source; nil means a randomly seeded one (tests pass
// rand.New(rand.NewPCG(seed, seed)) to make delays reproducible).
func NewBackoff(base, max time.Duration, rnd *rand.Rand) *Backoff {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	if max < base {
		max = base
	}
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Backoff{base: base, max: max, rnd: rnd}
}

// Cap returns min(Max, Base·2ⁿ), the upper bound of attempt n's delay.
func (b *Backoff) Cap(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	c := b.base
	for i := 0; i < attempt && c < b.max; i++ {
		c *= 2
	}
	if c > b.max {
		c = b.max
	}
	return c
}

// Delay returns attempt n's delay, uniform in [0, Cap(n)].
func (b *Backoff) Delay(attempt int) time.Duration {
	c := b.Cap(attempt)
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Duration(b.rnd.Int64N(int64(c) + 1))
}
