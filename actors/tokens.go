package actors

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// TokenView is the immutable state an AuthStore and a RefreshCoordinator
// publish for the HTTP hot path: the current account's token snapshot and
// the accounts whose refresh is in flight. Readers never take a lock or make
// an actor round trip. Safe for concurrent use; its zero value is ready.
type TokenView struct {
	current    atomic.Pointer[messages.TokenSnapshot]
	refreshing atomic.Pointer[map[string]uint64] // uid -> generation in flight
	hinted     atomic.Uint64                     // last Version a RefreshAhead was sent for
}

// Current returns the current account's snapshot, nil when signed out.
func (v *TokenView) Current() *messages.TokenSnapshot { return v.current.Load() }

// Snapshot is the pointer an AuthStore publishes into (WithSnapshot).
func (v *TokenView) Snapshot() *atomic.Pointer[messages.TokenSnapshot] { return &v.current }

// Refreshing reports whether a refresh of uid's session gen is in flight.
func (v *TokenView) Refreshing(uid string, gen uint64) bool {
	m := v.refreshing.Load()
	if m == nil {
		return false
	}
	g, ok := (*m)[uid]
	return ok && g == gen
}

func (v *TokenView) setRefreshing(m map[string]uint64) {
	if len(m) == 0 {
		v.refreshing.Store(nil)
		return
	}
	cp := make(map[string]uint64, len(m))
	for k, g := range m {
		cp[k] = g
	}
	v.refreshing.Store(&cp)
}

// Default refresh windows (TokenClient.Ahead/Hard and WithRefreshWindows
// zero values).
const (
	DefaultRefreshAhead = 60 * time.Second
	DefaultRefreshHard  = 10 * time.Second
)

// windowsFor is Windows for s, zero durations meaning the defaults.
func windowsFor(s *messages.TokenSnapshot, ahead, hard time.Duration) (time.Duration, time.Duration) {
	if ahead <= 0 {
		ahead = DefaultRefreshAhead
	}
	if hard <= 0 {
		hard = DefaultRefreshHard
	}
	return Windows(s.IssuedAt, s.ExpiresAt, ahead, hard)
}

// Windows returns how long before expiry a background refresh starts
// (ahead) and requests wait for it (hard), for a token issued at issued
// and expiring at exp. Both shrink for short-lived tokens: never more than
// half the lifetime the token was issued with, so a fresh token is never
// refreshed again at once.
func Windows(issued, exp time.Time, ahead, hard time.Duration) (time.Duration, time.Duration) {
	if !issued.IsZero() && exp.After(issued) {
		half := exp.Sub(issued) / 2
		ahead = min(ahead, half)
	}
	hard = min(hard, ahead/2)
	return ahead, hard
}

// TokenClient is the synchronous face of an AuthStore and a
// RefreshCoordinator for one HTTP client: the token to send a request with
// (no actor round trip unless a refresh is due or in flight) and the
// handling of a refused token. Safe for concurrent use.
type TokenClient struct {
	System      *actor.ActorSystem
	Coordinator *actor.PID
	View        *TokenView
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
	// Ahead is the refresh-ahead window. Zero value: 60s.
	Ahead time.Duration
	// Hard is the window before expiry in which requests wait for the
	// refresh. Zero value: 10s.
	Hard time.Duration
}

func (t *TokenClient) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Token returns the snapshot to send a request with, nil when signed out.
// It waits (with ctx) only when a refresh of that session is in flight or
// the token is inside its last seconds; inside the refresh-ahead window it
// starts one background refresh and returns the still-valid token.
func (t *TokenClient) Token(ctx context.Context) (*messages.TokenSnapshot, error) {
	s := t.View.Current()
	if s == nil {
		return nil, nil
	}
	if t.View.Refreshing(s.UID, s.Generation) {
		return t.acquire(ctx)
	}
	if !s.ExpiresAt.IsZero() {
		ahead, hard := windowsFor(s, t.Ahead, t.Hard)
		left := s.ExpiresAt.Sub(t.now())
		switch {
		case left <= hard:
			return t.acquire(ctx)
		case left <= ahead:
			if old := t.View.hinted.Load(); old != s.Version && t.View.hinted.CompareAndSwap(old, s.Version) {
				t.System.Root.Send(t.Coordinator, &messages.RefreshAhead{UID: s.UID, Generation: s.Generation, Version: s.Version})
			}
		}
	}
	return s, nil
}

func (t *TokenClient) acquire(ctx context.Context) (*messages.TokenSnapshot, error) {
	g, err := AskAs[*messages.TokenGrant](ctx, t.System, t.Coordinator, &messages.AcquireToken{})
	if err != nil {
		return nil, err
	}
	return &g.Snapshot, nil
}

// Unauthorized reports that a request sent with s was refused and returns
// the token to replay it with, or why there is none (ErrSessionExpired,
// ErrRefreshUnavailable, ErrLoggedOut, ErrClosed, or ctx.Err()).
func (t *TokenClient) Unauthorized(ctx context.Context, s *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	g, err := AskAs[*messages.TokenGrant](ctx, t.System, t.Coordinator,
		&messages.ReportUnauthorized{UID: s.UID, Generation: s.Generation, Version: s.Version})
	if err != nil {
		return nil, err
	}
	return &g.Snapshot, nil
}
