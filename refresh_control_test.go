package pigeon_test

// Refresh control (docs/refresh-control.md): Refresh, Account.Refresh and
// SubscribeRefreshes against the example backend, which rotates refresh
// tokens and counts refresh calls itself.

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/messages"
)

// awaitFlight returns once uid's refresh flight has n requests waiting
// for it, as the refresh coordinator counts them (AwaitFlight).
func awaitFlight(t *testing.T, ctx context.Context, p *pigeon.AuthorizedPigeon, uid string, n int) {
	t.Helper()
	sys, _, coord := p.Actors()
	if _, err := actors.AskAs[*messages.FlightInfo](ctx, sys, coord, &messages.AwaitFlight{UID: uid, Waiters: n}); err != nil {
		t.Fatalf("waiting for %d waiters in %s's flight: %v", n, uid, err)
	}
}

// failingRefreshes makes the backend's refresh endpoint answer 503 while
// failing is set.
func failingRefreshes(failing *atomic.Bool) backend.Option {
	return backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
}

// awaitNoFlight returns once uid has no refresh flight (AwaitNoFlight):
// a background refresh the last request started has ended.
func awaitNoFlight(t *testing.T, ctx context.Context, p *pigeon.AuthorizedPigeon, uid string) {
	t.Helper()
	sys, _, coord := p.Actors()
	if _, err := actors.AskAs[*messages.FlightInfo](ctx, sys, coord, &messages.AwaitNoFlight{UID: uid}); err != nil {
		t.Fatalf("waiting for %s's flight to end: %v", uid, err)
	}
}

func goRefresh(ctx context.Context, r interface{ Refresh(context.Context) error }) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- r.Refresh(ctx) }()
	return ch
}

// Refresh refreshes a valid token once; Refresh calls and a 401 that
// arrive while it runs join its flight (one refresh call for all of
// them); the 401's request is replayed with the new token.
func TestRefresh_ForcesOneRefreshAndJoinsTheFlight(t *testing.T) {
	g := newGate()
	e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	tok := e.login("a@example.com")

	first := goRefresh(ctx, e.p)
	recv(t, ctx, g.entered)
	second := goRefresh(ctx, e.p)
	e.be.ExpireAccessToken(tok.AccessToken)
	req := rowGo(ctx, e.p, "/echo")
	awaitFlight(t, ctx, e.p, tok.UID, 3)
	g.Open()
	for name, ch := range map[string]<-chan error{"first": first, "second": second} {
		if err := recv(t, ctx, ch); err != nil {
			t.Fatalf("%s Refresh: %v", name, err)
		}
	}
	if res := recv(t, ctx, req); res.err != nil || rowUID(t, res.resp) != tok.UID {
		t.Fatalf("the 401's request: %v", res.err)
	}
	rowWantCalls(t, e, 1)
	cur := rowCurrent(t, ctx, e.p)
	if string(cur.AccessToken) == tok.AccessToken || string(cur.RefreshToken) == tok.RefreshToken {
		t.Fatal("Refresh did not rotate the tokens")
	}
	if seen := e.seenTokens(); count(seen, string(cur.AccessToken)) != 1 || count(seen, tok.AccessToken) != 1 {
		t.Fatalf("the request went out %d times with the old token and %d with the new; want once each",
			count(seen, tok.AccessToken), count(seen, string(cur.AccessToken)))
	}
	// A valid token, nothing in flight: one more refresh.
	if err := e.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rowWantCalls(t, e, 2)
	if next := rowCurrent(t, ctx, e.p); next.AccessToken == cur.AccessToken {
		t.Fatal("the second Refresh kept the token")
	}
}

// Account.Refresh refreshes that account only, whatever is current; the
// errors say why nothing was refreshed: ErrNoAuth signed out,
// ErrUnknownAccount for a removed account, ErrRefreshUnavailable after a
// transient failure and during its back-off (no call), ErrSessionExpired
// for a refused refresh token, ErrClosed after Close.
func TestRefresh_AccountsAndErrors(t *testing.T) {
	var failing atomic.Bool
	e := newEnv(t, envConfig{backend: []backend.Option{failingRefreshes(&failing)}})
	ctx := ctxT(t)
	c := e.login("c@example.com")
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	acctA, acctB := acctAs(t, e, a.UID), acctAs(t, e, b.UID)
	if err := acctA.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rowWantCalls(t, e, 1)
	recs, err := e.p.AllAuths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if changed := string(rec.AccessToken) != map[string]string{a.UID: a.AccessToken, b.UID: b.AccessToken, c.UID: c.AccessToken}[rec.UID]; changed != (rec.UID == a.UID) {
			t.Fatalf("account %s: token changed %v, want only A's changed", rec.UID, changed)
		}
	}

	failing.Store(true)
	if err := acctB.Refresh(ctx); !errors.Is(err, pigeon.ErrRefreshUnavailable) {
		t.Fatalf("Refresh against a 503: %v, want ErrRefreshUnavailable", err)
	}
	failing.Store(false)
	if err := acctB.Refresh(ctx); !errors.Is(err, pigeon.ErrRefreshUnavailable) {
		t.Fatalf("Refresh during the back-off: %v, want ErrRefreshUnavailable", err)
	}
	rowWantCalls(t, e, 2)
	e.clock.Advance(time.Minute) // past any back-off step
	if err := acctB.Refresh(ctx); err != nil {
		t.Fatalf("Refresh after the back-off: %v", err)
	}
	rowWantCalls(t, e, 3)

	e.be.RevokeRefreshToken(c.RefreshToken)
	if err := e.p.Refresh(ctx); !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("Refresh with a revoked refresh token: %v, want ErrSessionExpired", err)
	}
	if err := e.p.Refresh(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("Refresh signed out: %v, want ErrNoAuth", err)
	}
	if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	if err := acctA.Refresh(ctx); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("Refresh of a removed account: %v, want ErrUnknownAccount", err)
	}
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Refresh(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Refresh after Close: %v, want ErrClosed", err)
	}
	if err := acctB.Refresh(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Account.Refresh after Close: %v, want ErrClosed", err)
	}
	if _, err := e.p.SubscribeRefreshes(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SubscribeRefreshes after Close: %v, want ErrClosed", err)
	}
}

// SubscribeRefreshes publishes each refresh call's outcome with its
// account: succeeded (with the new expiry), failed (transient) and
// rejected; a 401 answered by a token refreshed meanwhile is no refresh
// and no event. The channel closes when its ctx ends and on Close.
func TestSubscribeRefreshes_EveryOutcome(t *testing.T) {
	var failing atomic.Bool
	e := newEnv(t, envConfig{backend: []backend.Option{failingRefreshes(&failing)}})
	ctx := ctxT(t)
	sctx, stop := context.WithCancel(ctx)
	events, err := e.p.SubscribeRefreshes(sctx)
	if err != nil {
		t.Fatal(err)
	}
	untilClose, err := e.p.SubscribeRefreshes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); err != nil { // reactive refresh
		t.Fatal(err)
	}
	cur := rowCurrent(t, ctx, e.p)
	if ev := recv(t, ctx, events); ev.UID != tok.UID || ev.Outcome != pigeon.RefreshSucceeded || !ev.ExpiresAt.Equal(cur.ExpiresAt) || ev.Err != nil {
		t.Fatalf("event %+v, want %s succeeded, expiring %v", ev, tok.UID, cur.ExpiresAt)
	}
	failing.Store(true)
	if err := e.p.Refresh(ctx); !errors.Is(err, pigeon.ErrRefreshUnavailable) {
		t.Fatal(err)
	}
	if ev := recv(t, ctx, events); ev.Outcome != pigeon.RefreshFailed || !errors.Is(ev.Err, pigeon.ErrRefreshUnavailable) || ev.UID != tok.UID {
		t.Fatalf("event %+v, want failed with ErrRefreshUnavailable", ev)
	}
	failing.Store(false)
	e.clock.Advance(time.Minute)
	e.be.RevokeRefreshToken(string(cur.RefreshToken))
	if err := e.p.Refresh(ctx); !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatal(err)
	}
	if ev := recv(t, ctx, events); ev.Outcome != pigeon.RefreshRejected || !errors.Is(ev.Err, pigeon.ErrSessionExpired) || ev.UID != tok.UID {
		t.Fatalf("event %+v, want rejected with ErrSessionExpired", ev)
	}
	select {
	case ev := <-events:
		t.Fatalf("an event no refresh call made: %+v", ev)
	default:
	}
	stop()
	for range events { // drains to the close
	}
	for i := 0; i < 3; i++ {
		if ev := recv(t, ctx, untilClose); ev.UID != tok.UID {
			t.Fatalf("second subscriber, event %d: %+v", i, ev)
		}
	}
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-untilClose; ok {
		t.Fatal("a subscription outlived Close")
	}
}

// A refresh whose session LogOut ended while it ran is dropped: its
// waiters fail with ErrLoggedOut and it publishes no event; the next
// session's refresh does.
func TestSubscribeRefreshes_NothingForADroppedRefresh(t *testing.T) {
	g := newGate()
	e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	events, err := e.p.SubscribeRefreshes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	req := rowGo(ctx, e.p, "/echo")
	recv(t, ctx, g.entered)
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	g.Open()
	if res := recv(t, ctx, req); !errors.Is(res.err, pigeon.ErrLoggedOut) {
		t.Fatalf("the waiter: %v, want ErrLoggedOut", res.err)
	}
	awaitNoFlight(t, ctx, e.p, tok.UID) // answered after the flight's outcome is published
	select {
	case ev := <-events:
		t.Fatalf("an event for the dropped refresh: %+v", ev)
	default:
	}
	again := e.login("b@example.com")
	if err := e.p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, ctx, events); ev.UID != again.UID || ev.Outcome != pigeon.RefreshSucceeded {
		t.Fatalf("event %+v, want b's refresh", ev)
	}
}

// A reader that does not keep up loses the oldest events, never the
// newest, and never holds a refresh up: 70 refreshes into a queue of 64
// leave the last 64, in order.
func TestSubscribeRefreshes_SlowReaderLosesTheOldest(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxT(t)
	events, err := e.p.SubscribeRefreshes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.login("a@example.com")
	var expiries []time.Time
	for range 70 {
		e.clock.Advance(time.Second) // each refresh's expiry differs
		if err := e.p.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		expiries = append(expiries, rowCurrent(t, ctx, e.p).ExpiresAt)
	}
	var got []time.Time
	for len(got) < 70 {
		select {
		case ev := <-events:
			got = append(got, ev.ExpiresAt)
			continue
		default:
		}
		break
	}
	if len(got) != 64 {
		t.Fatalf("%d events queued, want 64", len(got))
	}
	for i, exp := range got {
		if !exp.Equal(expiries[6+i]) {
			t.Fatalf("event %d expires %v, want %v (the newest 64 kept)", i, exp, expiries[6+i])
		}
	}
}
