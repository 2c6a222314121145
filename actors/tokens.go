package actors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// TokenView is the state an AuthStore and a RefreshCoordinator publish
// for the HTTP hot path: the current account's token snapshot, every
// stored account's snapshot (when the store was given WithView) and the
// accounts whose refresh is in flight. Readers never take a lock or make
// an actor round trip; a write touches one account, never a copy of all
// of them. Safe for concurrent use; its zero value is ready.
type TokenView struct {
	current atomic.Pointer[messages.TokenSnapshot]
	// accounts: uid -> *viewEntry, one per stored account.
	accounts sync.Map
	// flights: uid -> *flightSignal of a refresh requests wait for;
	// inFlight counts them, so the common case (none) costs one load.
	flights  sync.Map
	inFlight atomic.Int64
	hinted   atomic.Uint64 // RefreshAhead hint for a view without accounts
	// watched counts the coordinator's AwaitFlight requests not answered
	// yet: while there are any, a request that waits on a flight here
	// tells the coordinator (so the watch counts it).
	watched atomic.Int64
	// replays counts refused requests given a newer token here, without
	// asking the coordinator (RefreshStats.Replays adds them).
	replays atomic.Uint64
}

// flightSignal is one published refresh flight: requests of its session
// wait on done instead of asking the coordinator, and read the flight's
// reply (a *messages.TokenGrant or a *messages.Failure, the same the
// coordinator sends its own waiters) once done is closed.
type flightSignal struct {
	gen, fromVer uint64
	done         chan struct{}
	reply        any // written once, before done closes
	waiters      atomic.Int64
}

// viewEntry is one account's published state.
type viewEntry struct {
	snap   atomic.Pointer[messages.TokenSnapshot]
	hinted atomic.Uint64 // last Version a RefreshAhead was sent for
}

// Current returns the current account's snapshot, nil when signed out.
func (v *TokenView) Current() *messages.TokenSnapshot { return v.current.Load() }

// Snapshot is the pointer an AuthStore publishes the current account
// into (WithSnapshot).
func (v *TokenView) Snapshot() *atomic.Pointer[messages.TokenSnapshot] { return &v.current }

// Account returns uid's snapshot, nil when the store does not hold uid
// (or publishes no accounts: see WithView).
func (v *TokenView) Account(uid string) *messages.TokenSnapshot {
	if e := v.entry(uid); e != nil {
		return e.snap.Load()
	}
	return nil
}

func (v *TokenView) entry(uid string) *viewEntry {
	e, ok := v.accounts.Load(uid)
	if !ok {
		return nil
	}
	return e.(*viewEntry)
}

// putAccount publishes s as its account's snapshot. Only the AuthStore
// writes accounts, one at a time.
func (v *TokenView) putAccount(s messages.TokenSnapshot) {
	e := v.entry(s.UID)
	if e == nil || e.snap.Load().Generation != s.Generation {
		// A new session starts with a fresh refresh-ahead hint.
		e = &viewEntry{}
		e.snap.Store(&s)
		v.accounts.Store(s.UID, e)
		return
	}
	e.snap.Store(&s)
}

// dropAccount forgets uid's snapshot (its session ended).
func (v *TokenView) dropAccount(uid string) { v.accounts.Delete(uid) }

// clear forgets every account and the current one.
func (v *TokenView) clear() {
	v.current.Store(nil)
	v.accounts.Clear()
}

// Refreshing reports whether requests of uid's session gen must wait for
// a refresh in flight.
func (v *TokenView) Refreshing(uid string, gen uint64) bool {
	return v.flight(uid, gen) != nil
}

// flight returns the published flight of uid's session gen, or nil.
func (v *TokenView) flight(uid string, gen uint64) *flightSignal {
	if v.inFlight.Load() == 0 {
		return nil
	}
	f, ok := v.flights.Load(uid)
	if !ok {
		return nil
	}
	if sig := f.(*flightSignal); sig.gen == gen {
		return sig
	}
	return nil
}

// setFlight publishes uid's flight of session gen from token version
// fromVer and returns its signal (the coordinator only, with no flight of
// uid published).
func (v *TokenView) setFlight(uid string, gen, fromVer uint64) *flightSignal {
	sig := &flightSignal{gen: gen, fromVer: fromVer, done: make(chan struct{})}
	if old, loaded := v.flights.Swap(uid, sig); loaded {
		old.(*flightSignal).finish(fail(fmt.Errorf("pigeon/actors: refresh flight of %q replaced: %w", uid, messages.ErrRefreshUnavailable)))
	} else {
		v.inFlight.Add(1)
	}
	return sig
}

// finishFlight unpublishes uid's flight and answers its waiters with reply
// (the coordinator only).
func (v *TokenView) finishFlight(uid string, reply any) {
	if f, loaded := v.flights.LoadAndDelete(uid); loaded {
		v.inFlight.Add(-1)
		f.(*flightSignal).finish(reply)
	}
}

// finishFlights unpublishes every flight, answering its waiters with a
// failure of why (the coordinator only).
func (v *TokenView) finishFlights(why error) {
	v.flights.Range(func(k, _ any) bool {
		v.finishFlight(k.(string), fail(why))
		return true
	})
}

func (s *flightSignal) finish(reply any) {
	s.reply = reply
	close(s.done)
}

// newer returns the token the view holds for s's session when it is newer
// than s and no refresh of that session is published, else nil: the
// answer the coordinator gives a refused request in that case (row 2 of
// refresh.md), without the round trip.
func (v *TokenView) newer(s *messages.TokenSnapshot) *messages.TokenSnapshot {
	var n *messages.TokenSnapshot
	if e := v.entry(s.UID); e != nil {
		n = e.snap.Load()
	} else if c := v.current.Load(); c != nil && c.UID == s.UID {
		n = c
	}
	if n == nil || n.Generation != s.Generation || n.Version <= s.Version || v.flight(s.UID, s.Generation) != nil {
		return nil
	}
	return n
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
// handling of a refused token. The account is UID when set, else the one
// the request's context names (messages.ContextWithAccount), else the
// current one. Safe for concurrent use.
type TokenClient struct {
	System      *actor.ActorSystem
	Coordinator *actor.PID
	View        *TokenView
	// UID binds the client to one account. Zero value: the context's
	// account, or the current one.
	UID string
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

// Token returns the snapshot to send a request with, nil when signed out
// (current account). A named account the store does not hold is an error
// matching messages.ErrUnknownAccount. It waits (with ctx) only when a
// refresh of that session is in flight or the token is inside its last
// seconds; inside the refresh-ahead window it starts one background
// refresh and returns the still-valid token.
func (t *TokenClient) Token(ctx context.Context) (*messages.TokenSnapshot, error) {
	uid := t.UID
	if uid == "" {
		uid = messages.AccountFromContext(ctx)
	}
	var s *messages.TokenSnapshot
	var e *viewEntry
	if uid == "" {
		if s = t.View.Current(); s == nil {
			return nil, nil
		}
	} else {
		if e = t.View.entry(uid); e == nil {
			return nil, unknownAccount(uid)
		}
		s = e.snap.Load()
	}
	if sig := t.View.flight(s.UID, s.Generation); sig != nil {
		return t.await(ctx, s.UID, sig)
	}
	if !s.ExpiresAt.IsZero() {
		ahead, hard := windowsFor(s, t.Ahead, t.Hard)
		left := s.ExpiresAt.Sub(t.now())
		switch {
		case left <= hard:
			return t.acquire(ctx, uid)
		case left <= ahead:
			t.hint(e, s)
		}
	}
	return s, nil
}

// hint sends one RefreshAhead per token version of s's account (e, or
// looked up; the view's own hint when it publishes no accounts).
func (t *TokenClient) hint(e *viewEntry, s *messages.TokenSnapshot) {
	if e == nil {
		e = t.View.entry(s.UID)
	}
	h := &t.View.hinted
	if e != nil {
		h = &e.hinted
	}
	if old := h.Load(); old != s.Version && h.CompareAndSwap(old, s.Version) {
		t.System.Root.Send(t.Coordinator, &messages.RefreshAhead{UID: s.UID, Generation: s.Generation, Version: s.Version})
	}
}

func unknownAccount(uid string) error {
	return fmt.Errorf("pigeon/actors: account %q: %w", uid, messages.ErrUnknownAccount)
}

func (t *TokenClient) acquire(ctx context.Context, uid string) (*messages.TokenSnapshot, error) {
	g, err := AskAs[*messages.TokenGrant](ctx, t.System, t.Coordinator, &messages.AcquireToken{UID: uid})
	if err != nil {
		return nil, err
	}
	return &g.Snapshot, nil
}

// Unauthorized reports that a request sent with s was refused and returns
// the token to replay it with, or why there is none (ErrSessionExpired,
// ErrRefreshUnavailable, ErrLoggedOut, ErrClosed, or ctx.Err()). It asks
// the coordinator only when neither a published refresh of s's session
// nor a newer token answers.
func (t *TokenClient) Unauthorized(ctx context.Context, s *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	if sig := t.View.flight(s.UID, s.Generation); sig != nil && s.Version <= sig.fromVer {
		return t.await(ctx, s.UID, sig)
	}
	if n := t.View.newer(s); n != nil {
		t.View.replays.Add(1)
		return n, nil
	}
	g, err := AskAs[*messages.TokenGrant](ctx, t.System, t.Coordinator,
		&messages.ReportUnauthorized{UID: s.UID, Generation: s.Generation, Version: s.Version})
	if err != nil {
		return nil, err
	}
	return &g.Snapshot, nil
}

// await waits for the published flight sig of uid to end, or for ctx, and
// returns the flight's reply as the coordinator would have.
func (t *TokenClient) await(ctx context.Context, uid string, sig *flightSignal) (*messages.TokenSnapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sig.waiters.Add(1)
	if t.View.watched.Load() > 0 {
		t.System.Root.Send(t.Coordinator, &flightJoined{uid: uid})
	}
	select {
	case <-ctx.Done():
		sig.waiters.Add(-1)
		return nil, ctx.Err()
	case <-sig.done:
	}
	switch r := sig.reply.(type) {
	case *messages.TokenGrant:
		return &r.Snapshot, nil
	case error:
		return nil, r
	default:
		return nil, fmt.Errorf("pigeon/actors: refresh flight of %q answered %T", uid, r)
	}
}

// flightJoined tells the coordinator that a request waits on uid's
// published flight (sent only while an AwaitFlight is pending).
type flightJoined struct{ uid string }
