package ws

import (
	"math/rand/v2"
	"time"

	"github.com/apppigeon/pigeon/internal/backoff"
)

// Default backoff bounds.
const (
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 20 * time.Second
)

// Backoff computes reconnect delays with pigeon's one back-off (the
// refresh coordinator's and WithRetry's too): attempt n (0-based) waits a
// uniformly random duration in [0, min(Max, Base·2ⁿ)) ("full jitter"), so
// that many clients reconnecting after the same outage spread over the
// window instead of arriving together. Safe for concurrent use.
type Backoff = backoff.Backoff

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
	return backoff.New(base, max, backoff.FromRand(rnd))
}
