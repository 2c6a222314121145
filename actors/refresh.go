package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/internal/backoff"
	"github.com/apppigeon/pigeon/messages"
)

// RefreshFunc performs one refresh of uid's tokens with refreshToken. It is
// user code (a RefreshTokenManager): the coordinator calls it off its
// mailbox, with a timeout and a panic recovery. An error wrapping
// messages.ErrRefreshRejected is terminal; any other error is transient.
type RefreshFunc func(ctx context.Context, uid string, refreshToken messages.Secret) (messages.RefreshedTokens, error)

// RefreshOption configures NewRefreshCoordinatorProps.
type RefreshOption interface{ applyRefresh(*refreshConfig) }

type refreshOptionFunc func(*refreshConfig)

func (f refreshOptionFunc) applyRefresh(c *refreshConfig) { f(c) }

type refreshConfig struct {
	store       *actor.PID
	view        *TokenView
	refresh     RefreshFunc
	timeout     time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration
	now         func() time.Time
	rand        func(n int64) int64
	logger      *zap.Logger
	onRefreshed func(messages.TokenSnapshot)
	ahead, hard time.Duration // zero: the defaults
	backoff     *backoff.Backoff

	observer FlightObserver // nil: none (refresh_obs.go)
}

// WithRefreshWindows sets the refresh-ahead and hard windows the
// coordinator applies to AcquireToken; give it the same values as the
// TokenClient in front of it. Zero values: DefaultRefreshAhead and
// DefaultRefreshHard.
func WithRefreshWindows(ahead, hard time.Duration) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) { c.ahead, c.hard = ahead, hard })
}

// WithRefreshTimeout bounds one refresh, independent of any caller's
// context. Zero value: 30s.
func WithRefreshTimeout(d time.Duration) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithRefreshBackoff sets the backoff after a transient refresh failure,
// pigeon's one back-off (full jitter, as sockets and WithRetry use): the
// n-th consecutive failure waits a random duration in [0, d) with
// d = min(max, base·2ⁿ⁻¹); a failure wrapping
// messages.ErrRefreshMisconfigured jumps to the top step (d = max) at
// once. Meanwhile new 401s fail fast with ErrRefreshUnavailable. Zero
// values: base 1s, max 30s.
func WithRefreshBackoff(base, max time.Duration) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) {
		if base > 0 {
			c.backoffBase = base
		}
		if max > 0 {
			c.backoffMax = max
		}
	})
}

// WithRefreshClock sets the clock. Zero value: time.Now.
func WithRefreshClock(now func() time.Time) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) {
		if now != nil {
			c.now = now
		}
	})
}

// WithRefreshRand sets the jitter source: a random number in [0, n) for
// n > 0. Zero value: math/rand/v2's Int64N.
func WithRefreshRand(f func(n int64) int64) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) {
		if f != nil {
			c.rand = f
		}
	})
}

// WithRefreshLogger sets the logger. Zero value: zap.NewNop().
func WithRefreshLogger(l *zap.Logger) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithOnRefreshed registers a function called (from the coordinator's
// mailbox, so it must not block) with every refreshed snapshot; pigeon uses
// it to push new headers to live sockets. Zero value: none.
func WithOnRefreshed(f func(messages.TokenSnapshot)) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) { c.onRefreshed = f })
}

// NewRefreshCoordinatorProps returns the Props of a RefreshCoordinator: the
// one owner of refreshing for the accounts of the AuthStore at store. It
// runs at most one refresh per account at a time; every request refused
// with that account's token waits for it and is answered with the new
// token (or why there is none). It reads the refresh token inside the
// flight, saves the result with UpdateTokens (one synced write, only if the
// session is still the one that started the refresh), ends the session on
// a rejected refresh (EndSession), and backs off after a transient failure.
// It publishes the accounts in flight into view (which must be the same
// TokenView whose Snapshot the AuthStore publishes into).
//
// Protocol: AcquireToken, ReportUnauthorized, RefreshAhead, ForceRefresh,
// SubscribeRefreshes, UnsubscribeRefreshes, AwaitFlight, AwaitNoFlight
// and GetRefreshStats of package messages. Every refresh call's outcome is
// published to the SubscribeRefreshes subscribers. On stop (and on a
// restart) every waiter gets ErrClosed (ErrRefreshUnavailable) and every
// subscription's channel is closed.
func NewRefreshCoordinatorProps(store *actor.PID, view *TokenView, refresh RefreshFunc, opts ...RefreshOption) *actor.Props {
	cfg := refreshConfig{
		store: store, view: view, refresh: refresh,
		timeout: 30 * time.Second, backoffBase: time.Second, backoffMax: 30 * time.Second,
		now: time.Now, logger: zap.NewNop(),
	}
	for _, o := range opts {
		o.applyRefresh(&cfg)
	}
	cfg.backoff = backoff.New(cfg.backoffBase, cfg.backoffMax, cfg.rand)
	return actor.PropsFromProducer(func() actor.Actor { return &refreshCoordinator{cfg: cfg} })
}

type flight struct {
	id      uint64
	uid     string
	gen     uint64
	fromVer uint64
	waiters []*actor.PID
	// sig is the flight as the view publishes it (nil while ahead):
	// requests waiting on it there count as waiters too.
	sig *flightSignal
	// ahead marks a background refresh of a still-valid token: requests
	// keep using it (the flight is not published as refreshing) until they
	// are inside the hard window or a 401 shows the token is refused.
	ahead bool
}

type backoffState struct {
	gen     uint64
	until   time.Time
	attempt int
}

type refreshDone struct {
	uid   string // the flight's account
	id    uint64
	snap  messages.TokenSnapshot
	err   error
	kind  doneKind
	calls bool // the refresh function was called
}

type doneKind int

const (
	doneOK        doneKind = iota
	doneNewer              // a newer token existed: no refresh was needed
	doneTransient          // refresh failed transiently: back off
	doneEnded              // the session ended (rejected, logged out, gone)
)

type refreshCoordinator struct {
	cfg      refreshConfig
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	flights  map[string]*flight
	nextID   uint64
	known    map[string]messages.TokenSnapshot
	ended    map[genKey]messages.EndReason
	endedQ   []genKey
	backoffs map[string]*backoffState
	subID    uint64
	stats    messages.RefreshStats
	// events are the SubscribeRefreshes queues, by subscription ID.
	events    map[uint64]chan messages.RefreshEvent
	nextEvSub uint64
	// watches are the AwaitFlight and AwaitNoFlight requests not
	// answered yet.
	watches []flightWatch
}

// flightWatch is one AwaitFlight waiting for a flight of uid to have n
// waiters.
type flightWatch struct {
	uid    string
	n      int
	idle   bool // AwaitNoFlight: answered once uid has no flight
	sender *actor.PID
}

func (r *refreshCoordinator) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		r.ctx, r.cancel = context.WithCancel(context.Background())
		r.flights = map[string]*flight{}
		r.known = map[string]messages.TokenSnapshot{}
		r.ended = map[genKey]messages.EndReason{}
		r.backoffs = map[string]*backoffState{}
		r.events = map[uint64]chan messages.RefreshEvent{}
		r.watches = nil
		r.cfg.view.watched.Store(0)
		r.cfg.view.finishFlights(fmt.Errorf("pigeon/actors: refresh coordinator restarted: %w", messages.ErrRefreshUnavailable))
		if r.cfg.store != nil {
			c.Request(r.cfg.store, &messages.SubscribeAuth{PID: c.Self(), Tokens: true})
		}
	case *actor.Stopping:
		r.release(c, messages.ErrClosed)
	case *actor.Restarting:
		r.release(c, fmt.Errorf("pigeon/actors: refresh coordinator restarted: %w", messages.ErrRefreshUnavailable))
	case *messages.AuthSubscription:
		r.subID = m.ID
	case *messages.AuthChanged:
		// status transitions are the store's business; tokens come below
	case *messages.TokensChanged:
		r.tokensChanged(m)
	case *messages.AcquireToken:
		r.acquire(c, m.UID)
	case *messages.ReportUnauthorized:
		r.unauthorized(c, c.Sender(), m.UID, m.Generation, m.Version)
	case *messages.RefreshAhead:
		if r.flights[m.UID] == nil && !r.backingOff(m.UID, m.Generation) {
			if k, ok := r.known[m.UID]; !ok || (k.Generation == m.Generation && k.Version <= m.Version) {
				r.start(c, m.UID, m.Generation, m.Version, true)
			}
		}
	case *refreshDone:
		r.done(c, m)
	case *messages.ForceRefresh:
		r.force(c, m.UID)
	case *messages.SubscribeRefreshes:
		r.subscribeEvents(c, m.Buffer)
	case *messages.UnsubscribeRefreshes:
		if ch := r.events[m.ID]; ch != nil {
			close(ch)
			delete(r.events, m.ID)
		}
	case *messages.AwaitFlight:
		r.watches = append(r.watches, flightWatch{uid: m.UID, n: m.Waiters, sender: c.Sender()})
		// Published before the waiters are counted: a request that
		// starts waiting on the view after the count sees it and tells us.
		r.cfg.view.watched.Add(1)
		r.checkWatches(c)
	case *flightJoined:
		r.checkWatches(c)
	case *messages.AwaitNoFlight:
		r.watches = append(r.watches, flightWatch{uid: m.UID, idle: true, sender: c.Sender()})
		r.checkWatches(c)
	case *messages.GetRefreshStats:
		s := r.stats
		s.Replays += r.cfg.view.replays.Load()
		c.Respond(&s)
	default:
		if c.Sender() != nil {
			c.Respond(fail(fmt.Errorf("pigeon/actors: refresh coordinator: unknown message %T", m)))
		}
	}
}

func (r *refreshCoordinator) release(c actor.Context, why error) {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	for uid, f := range r.flights {
		for _, w := range f.waiters {
			sendTo(c, w, fail(why))
		}
		delete(r.flights, uid)
	}
	r.cfg.view.finishFlights(why)
	for id, ch := range r.events {
		close(ch)
		delete(r.events, id)
	}
	for _, w := range r.watches {
		sendTo(c, w.sender, fail(why))
	}
	r.watches = nil
	r.cfg.view.watched.Store(0)
	if r.subID != 0 && r.cfg.store != nil {
		c.Send(r.cfg.store, &messages.UnsubscribeAuth{ID: r.subID})
	}
}

func (r *refreshCoordinator) tokensChanged(m *messages.TokensChanged) {
	uid := m.Snapshot.UID
	if m.Ended != 0 {
		r.rememberEnd(uid, m.Snapshot.Generation, m.Ended)
		if k, ok := r.known[uid]; ok && k.Generation == m.Snapshot.Generation {
			delete(r.known, uid)
		}
		delete(r.backoffs, uid)
		return
	}
	if k, ok := r.known[uid]; !ok || k.Generation != m.Snapshot.Generation || k.Version < m.Snapshot.Version {
		r.known[uid] = m.Snapshot
	}
	if b := r.backoffs[uid]; b != nil && b.gen != m.Snapshot.Generation {
		delete(r.backoffs, uid) // a new login: the old session's backoff is moot
	}
}

func (r *refreshCoordinator) rememberEnd(uid string, gen uint64, why messages.EndReason) {
	k := genKey{uid, gen}
	if _, ok := r.ended[k]; ok {
		return
	}
	r.ended[k] = why
	r.endedQ = append(r.endedQ, k)
	if len(r.endedQ) > maxEnded {
		delete(r.ended, r.endedQ[0])
		r.endedQ = r.endedQ[1:]
	}
}

// snapshotFor returns the token of account uid ("" = the current one), or
// why there is none (ErrNoAuth, ErrUnknownAccount).
func (r *refreshCoordinator) snapshotFor(uid string) (*messages.TokenSnapshot, error) {
	if uid == "" {
		if s := r.cfg.view.Current(); s != nil {
			return s, nil
		}
		return nil, messages.ErrNoAuth
	}
	if s := r.cfg.view.Account(uid); s != nil {
		return s, nil
	}
	return nil, unknownAccount(uid)
}

func (r *refreshCoordinator) acquire(c actor.Context, uid string) {
	s, err := r.snapshotFor(uid)
	if err != nil {
		c.Respond(fail(err))
		return
	}
	inHard := func() bool {
		if s.ExpiresAt.IsZero() {
			return false
		}
		_, hard := windowsFor(s, r.cfg.ahead, r.cfg.hard)
		return s.ExpiresAt.Sub(r.cfg.now()) <= hard
	}
	if f := r.flights[s.UID]; f != nil && f.gen == s.Generation && (!f.ahead || inHard()) {
		r.join(c, f, c.Sender())
		return
	}
	if r.flights[s.UID] == nil && !r.backingOff(s.UID, s.Generation) {
		if inHard() {
			r.join(c, r.start(c, s.UID, s.Generation, s.Version, false), c.Sender())
			return
		}
	}
	c.Respond(&messages.TokenGrant{Snapshot: *s})
}

func (r *refreshCoordinator) unauthorized(c actor.Context, sender *actor.PID, uid string, gen, ver uint64) {
	if why, ok := r.ended[genKey{uid, gen}]; ok {
		sendTo(c, sender, fail(why.Err()))
		return
	}
	if f := r.flights[uid]; f != nil && f.gen == gen && ver <= f.fromVer {
		r.join(c, f, sender)
		if f.ahead {
			f.ahead = false
			f.sig = r.cfg.view.setFlight(uid, f.gen, f.fromVer)
		}
		return
	}
	if k, ok := r.known[uid]; ok && k.Generation == gen && k.Version > ver {
		// Row 2: the token was refreshed after this request went out.
		r.stats.Replays++
		sendTo(c, sender, &messages.TokenGrant{Snapshot: k})
		return
	}
	if r.backingOff(uid, gen) {
		sendTo(c, sender, fail(fmt.Errorf("pigeon/actors: refresh backing off after a failure: %w", messages.ErrRefreshUnavailable)))
		return
	}
	if f := r.flights[uid]; f != nil {
		// A flight of another session or an older version is running;
		// queue behind it: its end decides (the worker re-checks).
		r.join(c, f, sender)
		return
	}
	r.join(c, r.start(c, uid, gen, ver, false), sender)
}

// force is ForceRefresh: join the session's flight, or start one (a
// background one: requests keep using the valid token meanwhile, and a
// 401 joins it), unless the session is backing off.
func (r *refreshCoordinator) force(c actor.Context, uid string) {
	s, err := r.snapshotFor(uid)
	if err != nil {
		c.Respond(fail(err))
		return
	}
	if f := r.flights[s.UID]; f != nil {
		// This session's flight, or another's whose end the worker
		// re-checks: either way its end answers.
		r.join(c, f, c.Sender())
		return
	}
	if r.backingOff(s.UID, s.Generation) {
		c.Respond(fail(fmt.Errorf("pigeon/actors: refresh backing off after a failure: %w", messages.ErrRefreshUnavailable)))
		return
	}
	r.join(c, r.start(c, s.UID, s.Generation, s.Version, true), c.Sender())
}

// join adds a waiter to f and answers the AwaitFlight requests it
// satisfies.
// waitersNow counts f's waiters: those that asked the coordinator and
// those waiting on the view's signal.
func (f *flight) waitersNow() int {
	n := len(f.waiters)
	if f.sig != nil {
		n += int(f.sig.waiters.Load())
	}
	return n
}

func (r *refreshCoordinator) join(c actor.Context, f *flight, w *actor.PID) {
	f.waiters = append(f.waiters, w)
	r.checkWatches(c)
}

func (r *refreshCoordinator) checkWatches(c actor.Context) {
	r.answerWatches(c, func(w flightWatch) any {
		f := r.flights[w.uid]
		switch {
		case w.idle && f == nil:
			return &messages.FlightInfo{UID: w.uid}
		case !w.idle && f != nil && f.waitersNow() >= w.n:
			return &messages.FlightInfo{UID: w.uid, Waiters: f.waitersNow()}
		}
		return nil
	})
}

// answerWatches sends each AwaitFlight the reply answer gives it and
// forgets it; those answered nil keep waiting.
func (r *refreshCoordinator) answerWatches(c actor.Context, answer func(flightWatch) any) {
	kept := r.watches[:0]
	for _, w := range r.watches {
		if reply := answer(w); reply != nil {
			sendTo(c, w.sender, reply)
			continue
		}
		kept = append(kept, w)
	}
	r.watches = kept
	n := 0
	for _, w := range kept {
		if !w.idle {
			n++
		}
	}
	r.cfg.view.watched.Store(int64(n))
}

func (r *refreshCoordinator) subscribeEvents(c actor.Context, n int) {
	if n <= 0 {
		n = messages.DefaultRefreshEventBuffer
	}
	r.nextEvSub++
	ch := make(chan messages.RefreshEvent, n)
	r.events[r.nextEvSub] = ch
	c.Respond(&messages.RefreshSubscription{ID: r.nextEvSub, C: ch})
}

func (r *refreshCoordinator) publish(ev messages.RefreshEvent) {
	for _, ch := range r.events {
		offerNewest(ch, ev)
	}
}

// sendTo replies to a requester; a request sent without a sender (Send
// instead of Request) gets no reply instead of crashing the actor.
func sendTo(c actor.Context, to *actor.PID, msg any) {
	if to != nil {
		c.Send(to, msg)
	}
}

func (r *refreshCoordinator) backingOff(uid string, gen uint64) bool {
	b := r.backoffs[uid]
	return b != nil && b.gen == gen && r.cfg.now().Before(b.until)
}

// start begins one refresh flight for uid in a goroutine the actor owns.
func (r *refreshCoordinator) start(c actor.Context, uid string, gen, ver uint64, ahead bool) *flight {
	r.nextID++
	f := &flight{id: r.nextID, uid: uid, gen: gen, fromVer: ver, ahead: ahead}
	r.flights[uid] = f
	if !ahead {
		f.sig = r.cfg.view.setFlight(uid, gen, ver)
	}
	self, root := c.Self(), c.ActorSystem().Root
	sys := c.ActorSystem()
	cfg := r.cfg
	ctx := r.ctx
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		d := cfg.observed(ctx, func(ctx context.Context) *refreshDone { return runRefresh(ctx, sys, cfg, f.id, uid, gen, ver) })
		d.uid = uid
		root.Send(self, d)
	}()
	return f
}

func (r *refreshCoordinator) done(c actor.Context, d *refreshDone) {
	f := r.flights[d.uid]
	if f == nil || f.id != d.id {
		return
	}
	delete(r.flights, f.uid)
	r.endWatches(c, f)
	// AwaitNoFlight is answered last, after the outcome is published.
	defer r.checkWatches(c)
	if d.calls {
		r.stats.Started++
	}
	var reply any
	switch d.kind {
	case doneOK, doneNewer:
		if d.kind == doneOK {
			r.stats.Succeeded++
			delete(r.backoffs, f.uid)
			if r.cfg.onRefreshed != nil {
				r.cfg.onRefreshed(d.snap)
			}
			r.publish(messages.RefreshEvent{UID: f.uid, Outcome: messages.RefreshSucceeded, ExpiresAt: d.snap.ExpiresAt})
		}
		if k, ok := r.known[f.uid]; !ok || k.Generation != d.snap.Generation || k.Version < d.snap.Version {
			r.known[f.uid] = d.snap
		}
		reply = &messages.TokenGrant{Snapshot: d.snap}
	case doneTransient:
		r.stats.Failed++
		b := r.backoffs[f.uid]
		if b == nil || b.gen != f.gen {
			b = &backoffState{gen: f.gen}
			r.backoffs[f.uid] = b
		}
		b.attempt++
		if errors.Is(d.err, messages.ErrRefreshMisconfigured) {
			// A retry cannot succeed before someone fixes the
			// configuration: no walk up the steps.
			b.attempt = max(b.attempt, r.cfg.backoff.Top()+1)
		}
		b.until = r.cfg.now().Add(r.cfg.backoff.Delay(b.attempt - 1))
		r.publish(messages.RefreshEvent{UID: f.uid, Outcome: messages.RefreshFailed, Err: d.err})
		reply = fail(d.err)
	case doneEnded:
		if errors.Is(d.err, messages.ErrSessionExpired) {
			r.stats.Rejected++
			r.rememberEnd(f.uid, f.gen, messages.EndExpired)
			r.publish(messages.RefreshEvent{UID: f.uid, Outcome: messages.RefreshRejected, Err: d.err})
		}
		reply = fail(d.err)
	}
	if f.sig != nil {
		r.cfg.view.finishFlight(f.uid, reply)
	}
	for _, w := range f.waiters {
		sendTo(c, w, reply)
	}
}

// endWatches fails the AwaitFlight requests of f's account: the flight
// they waited on ended before it had their waiters.
func (r *refreshCoordinator) endWatches(c actor.Context, f *flight) {
	r.answerWatches(c, func(w flightWatch) any {
		if w.uid == f.uid && !w.idle {
			return fail(fmt.Errorf("pigeon/actors: the refresh flight of %q ended with %d waiters", f.uid, f.waitersNow()))
		}
		return nil
	})
}

// runRefresh is one flight: it runs outside the mailbox and returns the
// outcome as a message.
func runRefresh(ctx context.Context, sys *actor.ActorSystem, cfg refreshConfig, id uint64, uid string, gen, ver uint64) *refreshDone {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	endErr := func() *refreshDone {
		st, err := AskAs[*messages.SessionState](ctx, sys, cfg.store, &messages.SessionEndReason{UID: uid, Generation: gen})
		if err != nil {
			return &refreshDone{id: id, kind: doneTransient, err: fmt.Errorf("pigeon/actors: refresh: %w: %w", messages.ErrRefreshUnavailable, err)}
		}
		return &refreshDone{id: id, kind: doneEnded, err: st.Reason.Err()}
	}
	// The refresh token is read inside the flight: a rotation that landed
	// before this flight is seen.
	cur, err := AskAs[*messages.CurrentAuth](ctx, sys, cfg.store, &messages.GetAuth{UID: uid})
	if errors.Is(err, messages.ErrNoAuth) {
		return endErr()
	}
	if err != nil {
		return &refreshDone{id: id, kind: doneTransient, err: fmt.Errorf("pigeon/actors: refresh: reading tokens: %w: %w", messages.ErrRefreshUnavailable, err)}
	}
	if cur.Snapshot.Generation != gen {
		return endErr()
	}
	if cur.Snapshot.Version > ver {
		return &refreshDone{id: id, kind: doneNewer, snap: cur.Snapshot}
	}
	if cur.Record.RefreshToken == "" {
		if _, err := AskAs[*messages.SessionEnded](ctx, sys, cfg.store, &messages.EndSession{UID: uid, Generation: gen, Reason: messages.EndExpired}); err != nil {
			return &refreshDone{id: id, kind: doneTransient, err: fmt.Errorf("pigeon/actors: refresh: %w: %w", messages.ErrRefreshUnavailable, err)}
		}
		return &refreshDone{id: id, kind: doneEnded, err: fmt.Errorf("pigeon/actors: no refresh token stored: %w", messages.ErrSessionExpired)}
	}
	started := cfg.now()
	tokens, err := callRefresh(ctx, cfg.refresh, uid, cur.Record.RefreshToken)
	switch {
	case errors.Is(err, messages.ErrRefreshRejected):
		cfg.logger.Info("refresh rejected: ending session", zap.String("uid", uid), zap.Error(err))
		if _, e := AskAs[*messages.SessionEnded](ctx, sys, cfg.store, &messages.EndSession{UID: uid, Generation: gen, Reason: messages.EndExpired}); e != nil {
			return &refreshDone{id: id, calls: true, kind: doneTransient, err: fmt.Errorf("pigeon/actors: refresh rejected, but ending the session failed: %w: %w", messages.ErrRefreshUnavailable, e)}
		}
		return &refreshDone{id: id, calls: true, kind: doneEnded, err: fmt.Errorf("%w: %w", messages.ErrSessionExpired, err)}
	case err != nil:
		cfg.logger.Warn("refresh failed", zap.String("uid", uid), zap.Error(err))
		return &refreshDone{id: id, calls: true, kind: doneTransient, err: fmt.Errorf("%w: %w", messages.ErrRefreshUnavailable, err)}
	case tokens.AccessToken == "":
		return &refreshDone{id: id, calls: true, kind: doneTransient, err: fmt.Errorf("pigeon/actors: refresh returned no access token: %w", messages.ErrRefreshUnavailable)}
	}
	saved, err := AskAs[*messages.SavedAuth](ctx, sys, cfg.store, &messages.UpdateTokens{
		UID: uid, Generation: gen,
		AccessToken: tokens.AccessToken, RefreshToken: tokens.RefreshToken,
		ExpiresAt: tokens.ExpiresAt, IssuedAt: started, Data: tokens.Data,
	})
	switch {
	case errors.Is(err, messages.ErrLoggedOut), errors.Is(err, messages.ErrSessionExpired):
		return &refreshDone{id: id, calls: true, kind: doneEnded, err: err}
	case err != nil:
		return &refreshDone{id: id, calls: true, kind: doneTransient, err: fmt.Errorf("pigeon/actors: saving refreshed tokens: %w: %w", messages.ErrRefreshUnavailable, err)}
	}
	return &refreshDone{id: id, calls: true, kind: doneOK, snap: saved.Snapshot}
}

// callRefresh runs user code with ctx, turning a panic into an error and
// returning when ctx ends even if the code does not.
func callRefresh(ctx context.Context, f RefreshFunc, uid string, rt messages.Secret) (messages.RefreshedTokens, error) {
	type result struct {
		t   messages.RefreshedTokens
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- result{err: fmt.Errorf("pigeon/actors: RefreshTokenManager panicked: %v", p)}
			}
		}()
		t, err := f(ctx, uid, rt)
		ch <- result{t, err}
	}()
	select {
	case res := <-ch:
		return res.t, res.err
	case <-ctx.Done():
		return messages.RefreshedTokens{}, fmt.Errorf("pigeon/actors: refresh did not finish: %w", ctx.Err())
	}
}
