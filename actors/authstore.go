package actors

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// AuthStoreOption configures NewAuthStoreProps.
type AuthStoreOption interface{ applyAuthStore(*authStoreConfig) }

type authStoreOptionFunc func(*authStoreConfig)

func (f authStoreOptionFunc) applyAuthStore(c *authStoreConfig) { f(c) }

type authStoreConfig struct {
	store    persistence.Store
	snapshot *atomic.Pointer[messages.TokenSnapshot]
	view     *TokenView
	logger   *zap.Logger
	now      func() time.Time
}

// WithSnapshot makes the store publish the current account's
// TokenSnapshot into p (nil when signed out) before it acknowledges any
// change, so a reader of p never sees a token older than the last
// acknowledged save. Zero value (option not given): nothing is published.
func WithSnapshot(p *atomic.Pointer[messages.TokenSnapshot]) AuthStoreOption {
	return authStoreOptionFunc(func(c *authStoreConfig) { c.snapshot = p })
}

// WithView makes the store publish into v, before it acknowledges any
// change: the current account's snapshot (as WithSnapshot(v.Snapshot()))
// and every stored account's (TokenView.Account), so requests of any
// account read their token without a round trip. Zero value: nothing is
// published into a view.
func WithView(v *TokenView) AuthStoreOption {
	return authStoreOptionFunc(func(c *authStoreConfig) {
		c.view = v
		if v != nil {
			c.snapshot = v.Snapshot()
		}
	})
}

// WithAuthStoreLogger sets the logger. Zero value: zap.NewNop().
func WithAuthStoreLogger(l *zap.Logger) AuthStoreOption {
	return authStoreOptionFunc(func(c *authStoreConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithAuthStoreClock sets the clock used for IssuedAt. Zero value: time.Now.
func WithAuthStoreClock(now func() time.Time) AuthStoreOption {
	return authStoreOptionFunc(func(c *authStoreConfig) {
		if now != nil {
			c.now = now
		}
	})
}

// NewAuthStoreProps returns the Props of an AuthStore actor over store. The
// actor owns the in-memory view of every account, the current account and
// the auth-status subscribers; it speaks the AuthStore protocol of package
// messages (SaveAuth, GetCurrentAuth, ListAuths, SwitchAccount, LogOut,
// UpdateTokens, EndSession, SessionEndReason, SubscribeAuth,
// UnsubscribeAuth). Disk I/O runs in goroutines the actor owns (a write
// to a BadgerStore in the store's own committer, through ApplyAsync,
// which the actor waits for as for its goroutines). Many
// writes are in flight at once, so that the store can commit them
// together: a write waits, in the order it arrived, only for the writes
// before it that touch the same UID or the current-account pointer
// (SwitchAccount, LogOut, RemoveAccount, EndSession, SaveAuth with
// MakeCurrent). A change is acknowledged (and announced) only after it is
// synced. Reads never wait for writes: they are answered from the
// acknowledged state, so they never show a change that is not durable. At
// start the state is loaded in pages, each installed by its own message;
// requests wait for the last page. After a supervisor restart the actor
// reloads from the store; requests it held when it failed are answered
// with an error.
//
// The actor does not close store: its owner does, after stopping the actor.
func NewAuthStoreProps(store persistence.Store, opts ...AuthStoreOption) *actor.Props {
	cfg := authStoreConfig{store: store, logger: zap.NewNop(), now: time.Now}
	for _, o := range opts {
		o.applyAuthStore(&cfg)
	}
	return actor.PropsFromProducer(func() actor.Actor { return &authStore{cfg: cfg} })
}

type account struct {
	rec messages.AuthRecord
	gen uint64
	ver uint64
	// announced: its session start was published to account streams.
	announced bool
}

type genKey struct {
	uid string
	gen uint64
}

type authSub struct {
	pid    *actor.PID
	tokens bool
	ch     chan messages.AuthStatus
	uid    string                      // one account's stream (ch), else ""
	all    chan messages.AccountStatus // the all-accounts stream
}

type stashed struct {
	sender *actor.PID
	msg    any
}

// storeLoaded and storeWritten are the results of the actor's I/O
// goroutines. by is the actor instance that started the I/O: a result
// that reaches a later instance (after a restart) is dropped. A load sends
// one storeLoaded per page; the last has done set (and the current
// account, or err).
type storeLoaded struct {
	by      *authStore
	records []messages.AuthRecord
	done    bool
	current string
	err     error
}

type storeWritten struct {
	by  *authStore
	id  uint64
	err error
}

// loadPageSize is the number of records one storeLoaded installs.
const loadPageSize = 1000

// lockKey is what a write holds while it is in flight: one UID's record,
// or (current) the current-account pointer.
type lockKey struct {
	uid     string
	current bool
}

// maxEnded bounds the memory of ended sessions (for late 401s).
const maxEnded = 1024

type authStore struct {
	cfg     authStoreConfig
	loaded  bool
	loadErr error
	accts   map[string]*account
	current string
	nextGen uint64
	ended   map[genKey]messages.EndReason
	endedQ  []genKey
	subs    map[uint64]*authSub // current-account subscribers
	// acctSubs are the account streams: one account's (SubscribeAuth
	// with UID) or all accounts' (SubscribeAccounts).
	acctSubs map[uint64]*authSub
	nextSub  uint64
	status   messages.AuthStatus

	stash    []stashed             // requests waiting for the load
	held     []stashed             // writes waiting for a conflicting write, in arrival order
	inflight map[uint64]*pendingOp // writes sent to the store, by id
	locked   map[lockKey]bool      // held by the writes in flight
	locking  []lockKey             // what the write being dispatched holds
	nextOp   uint64
	cancel   context.CancelFunc // stops the load
	wg       sync.WaitGroup
}

type pendingOp struct {
	sender *actor.PID
	commit func() any // runs on success; returns the reply
	keys   []lockKey
}

func (a *authStore) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		a.start(c)
	case *actor.Stopping:
		a.release(c, messages.ErrClosed)
	case *actor.Restarting:
		a.release(c, errors.New("pigeon/actors: auth store restarted; request lost, try again"))
	case *storeLoaded:
		if m.by != a || a.loaded {
			return
		}
		a.loadPage(m)
		if m.done {
			a.loaded = true
			a.drain(c)
		}
	case *storeWritten:
		op := a.inflight[m.id]
		if m.by != a || op == nil {
			return
		}
		delete(a.inflight, m.id)
		for _, k := range op.keys {
			delete(a.locked, k)
		}
		var reply any
		if m.err != nil {
			reply = &messages.Failure{Err: fmt.Errorf("pigeon/actors: auth store write: %w", m.err)}
		} else {
			reply = op.commit()
		}
		if op.sender != nil {
			c.Send(op.sender, reply)
		}
		a.release1(c)
	default:
		a.handle(c, c.Sender(), m)
	}
}

func (a *authStore) start(c actor.Context) {
	a.accts = map[string]*account{}
	a.ended = map[genKey]messages.EndReason{}
	a.subs = map[uint64]*authSub{}
	a.acctSubs = map[uint64]*authSub{}
	// Generations are unique across restarts of the actor: a restart must
	// not make an old session look live again.
	a.nextGen = uint64(a.cfg.now().UnixNano())
	a.inflight = map[uint64]*pendingOp{}
	a.locked = map[lockKey]bool{}
	self, root := c.Self(), c.ActorSystem().Root
	store := a.cfg.store
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		// Each page is its own message: the actor installs it quickly and
		// its mailbox moves on between pages.
		cur, err := persistence.LoadPages(ctx, store, loadPageSize, func(recs []messages.AuthRecord) error {
			root.Send(self, &storeLoaded{by: a, records: recs})
			return nil
		})
		root.Send(self, &storeLoaded{by: a, done: true, current: cur, err: err})
	}()
}

// loadPage installs one page of the load; the last page also sets the
// current account, or records the load's error.
func (a *authStore) loadPage(m *storeLoaded) {
	if a.loadErr != nil {
		return
	}
	if m.err != nil {
		a.loadErr = fmt.Errorf("pigeon/actors: loading auth store: %w", m.err)
		a.cfg.logger.Error("auth store load failed", zap.Error(m.err))
		a.accts = map[string]*account{}
		return
	}
	if m.done {
		a.install(persistence.State{Current: m.current})
		return
	}
	for _, r := range m.records {
		// The page is ours (LoadPages hands each page over): no copy.
		a.accts[r.UID] = &account{rec: r, gen: a.newGen(), ver: 1}
	}
	// Each page's accounts are published into the view as they arrive,
	// once each, so the whole load stays linear.
	a.publishLoaded(m.records)
}

// release runs when the actor stops or restarts: it waits for its I/O
// goroutine, fails every request it holds and ends every subscription.
func (a *authStore) release(c actor.Context, why error) {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	ids := make([]uint64, 0, len(a.inflight))
	for id := range a.inflight {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if s := a.inflight[id].sender; s != nil {
			c.Send(s, &messages.Failure{Err: why})
		}
	}
	a.inflight = nil
	a.locked = nil
	for _, s := range append(a.held, a.stash...) {
		if s.sender != nil {
			c.Send(s.sender, &messages.Failure{Err: why})
		}
	}
	a.held, a.stash = nil, nil
	for id, s := range a.subs {
		if s.ch != nil {
			close(s.ch)
		}
		delete(a.subs, id)
	}
	a.closeAccountSubs()
	if a.cfg.snapshot != nil {
		a.cfg.snapshot.Store(nil)
	}
	if a.cfg.view != nil {
		a.cfg.view.clear()
	}
}

func (a *authStore) install(st persistence.State) {
	for _, r := range st.Records {
		a.accts[r.UID] = &account{rec: r.Clone(), gen: a.newGen(), ver: 1}
	}
	if _, ok := a.accts[st.Current]; ok {
		a.current = st.Current
	}
	a.status = a.currentStatus()
	a.publishSnapshot()
	a.publishLoaded(st.Records)
}

func (a *authStore) newGen() uint64 {
	a.nextGen++
	return a.nextGen
}

// drain handles, in order, the requests that waited for the load.
func (a *authStore) drain(c actor.Context) {
	stash := a.stash
	a.stash = nil
	for _, s := range stash {
		a.handle(c, s.sender, s.msg)
	}
}

// release1 runs after a write completed: every held write that no longer
// conflicts with a write in flight, nor with a held write before it, is
// dispatched, in order.
func (a *authStore) release1(c actor.Context) {
	held := a.held
	a.held = nil
	for _, s := range held {
		a.handle(c, s.sender, s.msg) // held again if it still conflicts
	}
}

// lockKeys is what the write msg holds while in flight; all is false when
// it cannot be known before the write is dispatched (LogOut: the current
// account's UID), in which case it must wait for every write before it.
func (a *authStore) lockKeys(msg any) (keys []lockKey, all bool) {
	cur := lockKey{current: true}
	switch m := msg.(type) {
	case *messages.SaveAuth:
		keys = []lockKey{{uid: m.Record.UID}}
		if m.MakeCurrent {
			keys = append(keys, cur)
		}
	case *messages.UpdateTokens:
		keys = []lockKey{{uid: m.UID}}
	case *messages.SwitchAccount:
		keys = []lockKey{{uid: m.UID}, cur}
	case *messages.RemoveAccount:
		keys = []lockKey{{uid: m.UID}, cur}
	case *messages.EndSession:
		keys = []lockKey{{uid: m.UID}, cur}
	case *messages.LogOut:
		// a.current is stable once the pointer is not locked.
		return []lockKey{{uid: a.current}, cur}, false
	}
	return keys, true
}

// hold reports whether the write msg must wait (it is then held); when it
// need not, it records the keys the write will hold in a.locking.
func (a *authStore) hold(sender *actor.PID, msg any) bool {
	keys, known := a.lockKeys(msg)
	wait := !known && len(a.held) > 0
	for _, h := range a.held {
		if wait {
			break
		}
		hk, hknown := a.lockKeys(h.msg)
		wait = !hknown || overlaps(keys, hk)
	}
	for _, k := range keys {
		wait = wait || a.locked[k]
	}
	if wait {
		a.held = append(a.held, stashed{sender: sender, msg: msg})
		return true
	}
	a.locking = keys
	return false
}

func overlaps(x, y []lockKey) bool {
	for _, k := range x {
		if slices.Contains(y, k) {
			return true
		}
	}
	return false
}

func (a *authStore) reply(c actor.Context, to *actor.PID, msg any) {
	if to != nil {
		c.Send(to, msg)
	}
}

func fail(err error) *messages.Failure { return &messages.Failure{Err: err} }

func (a *authStore) handle(c actor.Context, sender *actor.PID, msg any) {
	if !a.loaded {
		a.stash = append(a.stash, stashed{sender: sender, msg: msg})
		return
	}
	if a.loadErr != nil {
		if isAuthRequest(msg) {
			a.reply(c, sender, fail(a.loadErr))
		}
		return
	}
	if isAuthWrite(msg) && a.hold(sender, msg) {
		return
	}
	switch m := msg.(type) {
	case *messages.GetCurrentAuth:
		acct := a.accts[a.current]
		if acct == nil {
			a.reply(c, sender, fail(messages.ErrNoAuth))
			return
		}
		a.reply(c, sender, &messages.CurrentAuth{Record: acct.rec.Clone(), Snapshot: a.snap(acct)})
	case *messages.GetAuth:
		acct := a.accts[m.UID]
		if acct == nil {
			a.reply(c, sender, fail(messages.ErrNoAuth))
			return
		}
		a.reply(c, sender, &messages.CurrentAuth{Record: acct.rec.Clone(), Snapshot: a.snap(acct)})
	case *messages.ListAuths:
		list := &messages.AuthList{Current: a.current, Records: make([]messages.AuthRecord, 0, len(a.accts))}
		for _, acct := range a.accts {
			list.Records = append(list.Records, acct.rec.Clone())
		}
		slices.SortFunc(list.Records, func(x, y messages.AuthRecord) int { return strings.Compare(x.UID, y.UID) })
		a.reply(c, sender, list)
	case *messages.SessionEndReason:
		acct := a.accts[m.UID]
		if acct != nil && acct.gen == m.Generation {
			a.reply(c, sender, &messages.SessionState{Snapshot: a.snap(acct)})
			return
		}
		a.reply(c, sender, &messages.SessionState{Reason: a.endReason(m.UID, m.Generation)})
	case *messages.SubscribeAuth:
		a.subscribe(c, sender, m)
	case *messages.SubscribeAccounts:
		a.subscribeAccounts(c, sender, m)
	case *messages.UnsubscribeAuth:
		if s := a.subs[m.ID]; s != nil {
			if s.ch != nil {
				close(s.ch)
			}
			delete(a.subs, m.ID)
		}
		a.unsubscribeAccount(m.ID)
		a.reply(c, sender, &messages.Unsubscribed{})
	case *messages.SaveAuth:
		a.save(c, sender, m)
	case *messages.SwitchAccount:
		a.switchTo(c, sender, m)
	case *messages.LogOut:
		a.logOut(c, sender)
	case *messages.RemoveAccount:
		a.remove(c, sender, m)
	case *messages.UpdateTokens:
		a.updateTokens(c, sender, m)
	case *messages.EndSession:
		a.endSession(c, sender, m)
	default:
		// Not ours: answer requests so that an asker never hangs.
		if sender != nil {
			a.reply(c, sender, fail(fmt.Errorf("pigeon/actors: auth store: unknown message %T", msg)))
		}
	}
}

func isAuthWrite(msg any) bool {
	switch msg.(type) {
	case *messages.SaveAuth, *messages.SwitchAccount, *messages.LogOut, *messages.RemoveAccount, *messages.UpdateTokens, *messages.EndSession:
		return true
	}
	return false
}

func isAuthRequest(msg any) bool {
	switch msg.(type) {
	case *messages.GetCurrentAuth, *messages.GetAuth, *messages.ListAuths, *messages.SessionEndReason,
		*messages.SubscribeAuth, *messages.SubscribeAccounts, *messages.UnsubscribeAuth:
		return true
	}
	return isAuthWrite(msg)
}

// write applies ch in the actor's I/O goroutine (BadgerStore.ApplyAsync
// on a BadgerStore); commit runs when it is synced and returns the reply.
// It holds the keys hold recorded until then.
func (a *authStore) write(c actor.Context, sender *actor.PID, ch persistence.Change, commit func() any) {
	a.nextOp++
	id := a.nextOp
	op := &pendingOp{sender: sender, commit: commit, keys: a.locking}
	a.locking = nil
	for _, k := range op.keys {
		a.locked[k] = true
	}
	a.inflight[id] = op
	self, root := c.Self(), c.ActorSystem().Root
	store := a.cfg.store
	a.wg.Add(1)
	if bs, ok := store.(*persistence.BadgerStore); ok {
		// No goroutine per write: the store calls back once it is synced.
		// Only the BadgerStore itself: a wrapper that embeds one and
		// overrides Apply must see every write.
		bs.ApplyAsync(context.Background(), ch, func(err error) {
			defer a.wg.Done()
			root.Send(self, &storeWritten{by: a, id: id, err: err})
		})
		return
	}
	go func() {
		defer a.wg.Done()
		err := store.Apply(context.Background(), ch)
		root.Send(self, &storeWritten{by: a, id: id, err: err})
	}()
}

func (a *authStore) save(c actor.Context, sender *actor.PID, m *messages.SaveAuth) {
	rec := m.Record.Clone()
	if rec.UID == "" || rec.AccessToken == "" {
		a.reply(c, sender, fail(errors.New("pigeon/actors: SaveAuth needs a UID and an access token")))
		return
	}
	if rec.IssuedAt.IsZero() {
		rec.IssuedAt = a.cfg.now()
	}
	if rec.ExpiresAt.IsZero() {
		rec.ExpiresAt = JWTExpiry(string(rec.AccessToken))
	}
	ch := persistence.Change{Put: []messages.AuthRecord{rec}}
	if m.MakeCurrent {
		uid := rec.UID
		ch.SetCurrent = &uid
	}
	a.write(c, sender, ch, func() any {
		acct := a.accts[rec.UID]
		if acct == nil {
			acct = &account{gen: a.newGen()}
			a.accts[rec.UID] = acct
		}
		acct.rec = rec
		acct.ver++
		if m.MakeCurrent {
			a.current = rec.UID
		}
		a.changed(c, acct)
		return &messages.SavedAuth{Snapshot: a.snap(acct)}
	})
}

func (a *authStore) switchTo(c actor.Context, sender *actor.PID, m *messages.SwitchAccount) {
	acct := a.accts[m.UID]
	if acct == nil {
		a.reply(c, sender, fail(fmt.Errorf("pigeon/actors: switch to %q: %w", m.UID, messages.ErrUnknownAccount)))
		return
	}
	if a.current == m.UID {
		a.reply(c, sender, &messages.SavedAuth{Snapshot: a.snap(acct)})
		return
	}
	uid := m.UID
	a.write(c, sender, persistence.Change{SetCurrent: &uid}, func() any {
		a.current = uid
		a.changed(c, acct)
		return &messages.SavedAuth{Snapshot: a.snap(acct)}
	})
}

func (a *authStore) logOut(c actor.Context, sender *actor.PID) {
	if a.current == "" {
		a.reply(c, sender, &messages.LoggedOut{})
		return
	}
	a.removeAccount(c, sender, a.current)
}

func (a *authStore) remove(c actor.Context, sender *actor.PID, m *messages.RemoveAccount) {
	if a.accts[m.UID] == nil {
		a.reply(c, sender, fail(fmt.Errorf("pigeon/actors: remove %q: %w", m.UID, messages.ErrUnknownAccount)))
		return
	}
	a.removeAccount(c, sender, m.UID)
}

// removeAccount deletes a stored account's tokens and ends its session as
// a logout.
func (a *authStore) removeAccount(c actor.Context, sender *actor.PID, uid string) {
	a.write(c, sender, a.removal(uid), func() any {
		was := a.current == uid
		a.endLocal(c, uid, messages.EndLoggedOut)
		return &messages.LoggedOut{UID: uid, WasCurrent: was}
	})
}

// removal is the change that deletes uid's record, clearing "current" if
// it is the current account.
func (a *authStore) removal(uid string) persistence.Change {
	ch := persistence.Change{Delete: []string{uid}}
	if a.current == uid {
		none := ""
		ch.SetCurrent = &none
	}
	return ch
}

func (a *authStore) updateTokens(c actor.Context, sender *actor.PID, m *messages.UpdateTokens) {
	acct := a.accts[m.UID]
	if acct == nil || acct.gen != m.Generation {
		a.reply(c, sender, fail(a.endReason(m.UID, m.Generation).Err()))
		return
	}
	if m.AccessToken == "" {
		a.reply(c, sender, fail(errors.New("pigeon/actors: UpdateTokens without an access token")))
		return
	}
	rec := acct.rec.Clone()
	rec.AccessToken = m.AccessToken
	if m.RefreshToken != "" {
		rec.RefreshToken = m.RefreshToken
	}
	rec.ExpiresAt = m.ExpiresAt
	if rec.ExpiresAt.IsZero() {
		rec.ExpiresAt = JWTExpiry(string(m.AccessToken))
	}
	rec.IssuedAt = m.IssuedAt
	if rec.IssuedAt.IsZero() {
		rec.IssuedAt = a.cfg.now()
	}
	if m.Data != nil {
		rec.Data = append(json.RawMessage(nil), m.Data...)
	}
	gen := acct.gen
	a.write(c, sender, persistence.Change{Put: []messages.AuthRecord{rec}}, func() any {
		// The session may have ended while the write was in flight only
		// through another write of this UID, and those wait for this one:
		// acct is live.
		if cur := a.accts[m.UID]; cur != acct || cur.gen != gen {
			return fail(a.endReason(m.UID, gen).Err())
		}
		acct.rec = rec
		acct.ver++
		a.changed(c, acct)
		return &messages.SavedAuth{Snapshot: a.snap(acct)}
	})
}

func (a *authStore) endSession(c actor.Context, sender *actor.PID, m *messages.EndSession) {
	acct := a.accts[m.UID]
	if acct == nil || acct.gen != m.Generation {
		a.reply(c, sender, &messages.SessionEnded{})
		return
	}
	reason := m.Reason
	if reason == 0 {
		reason = messages.EndExpired
	}
	a.write(c, sender, a.removal(m.UID), func() any {
		a.endLocal(c, m.UID, reason)
		return &messages.SessionEnded{Ended: true}
	})
}

// endLocal forgets uid's account after its removal was synced.
func (a *authStore) endLocal(c actor.Context, uid string, reason messages.EndReason) {
	acct := a.accts[uid]
	if acct == nil {
		return
	}
	k := genKey{uid, acct.gen}
	a.ended[k] = reason
	a.endedQ = append(a.endedQ, k)
	if len(a.endedQ) > maxEnded {
		delete(a.ended, a.endedQ[0])
		a.endedQ = a.endedQ[1:]
	}
	wasCurrent := a.current == uid
	delete(a.accts, uid)
	if wasCurrent {
		a.current = ""
	}
	snap := a.snap(acct)
	snap.AccessToken = ""
	for _, s := range a.subs {
		if s.pid != nil && s.tokens {
			c.Send(s.pid, &messages.TokensChanged{Snapshot: snap, Current: wasCurrent, Ended: reason})
		}
	}
	a.publishSnapshot()
	a.accountEnded(c, uid)
	a.publishStatus(c)
}

func (a *authStore) endReason(uid string, gen uint64) messages.EndReason {
	if r, ok := a.ended[genKey{uid, gen}]; ok {
		return r
	}
	// Unknown (forgotten, or from before a restart): the session is gone.
	return messages.EndLoggedOut
}

// changed publishes what follows from a committed change of acct.
func (a *authStore) changed(c actor.Context, acct *account) {
	isCurrent := a.accts[a.current] == acct
	if isCurrent {
		a.publishSnapshot()
	}
	snap := a.snap(acct)
	if a.cfg.view != nil {
		a.cfg.view.putAccount(snap)
	}
	if !acct.announced {
		acct.announced = true
		a.announce(c, messages.AccountStatus{UID: snap.UID, State: messages.Authenticated})
	}
	for _, s := range a.subs {
		if s.pid != nil && s.tokens {
			c.Send(s.pid, &messages.TokensChanged{Snapshot: snap, Current: isCurrent})
		}
	}
	a.publishStatus(c)
}

func (a *authStore) snap(acct *account) messages.TokenSnapshot {
	return messages.TokenSnapshot{
		UID:         acct.rec.UID,
		AccessToken: acct.rec.AccessToken,
		ExpiresAt:   acct.rec.ExpiresAt,
		IssuedAt:    acct.rec.IssuedAt,
		Generation:  acct.gen,
		Version:     acct.ver,
	}.WithAuthorization()
}

func (a *authStore) publishSnapshot() {
	if a.cfg.snapshot == nil {
		return
	}
	acct := a.accts[a.current]
	if acct == nil {
		a.cfg.snapshot.Store(nil)
		return
	}
	s := a.snap(acct)
	a.cfg.snapshot.Store(&s)
}

// publishLoaded publishes the accounts of loaded records (each once: a
// load stays linear however it is paged); they are no news to account
// streams.
func (a *authStore) publishLoaded(recs []messages.AuthRecord) {
	for _, r := range recs {
		acct := a.accts[r.UID]
		if acct == nil {
			continue
		}
		acct.announced = true
		if a.cfg.view != nil {
			a.cfg.view.putAccount(a.snap(acct))
		}
	}
}

// accountEnded unpublishes uid after its session ended and tells the
// account streams.
func (a *authStore) accountEnded(c actor.Context, uid string) {
	if a.cfg.view != nil {
		a.cfg.view.dropAccount(uid)
	}
	a.announce(c, messages.AccountStatus{UID: uid, State: messages.Unauthenticated})
}

// announce gives an account's transition to the account streams.
func (a *authStore) announce(c actor.Context, st messages.AccountStatus) {
	for _, s := range a.acctSubs {
		switch {
		case s.uid != "":
			if s.uid == st.UID {
				offerNewest(s.ch, messages.AuthStatus{State: st.State, UID: st.UID})
			}
		case s.pid != nil:
			c.Send(s.pid, &messages.AccountChanged{Status: st})
		default:
			offerNewest(s.all, st)
		}
	}
}

func (a *authStore) subscribeAccounts(c actor.Context, sender *actor.PID, m *messages.SubscribeAccounts) {
	n := m.Buffer
	if n <= 0 {
		n = 1024
	}
	a.nextSub++
	s := &authSub{pid: m.PID}
	if m.PID == nil {
		s.all = make(chan messages.AccountStatus, n)
	}
	a.acctSubs[a.nextSub] = s
	a.reply(c, sender, &messages.AccountsSubscription{ID: a.nextSub, C: s.all})
}

func (a *authStore) unsubscribeAccount(id uint64) {
	if s := a.acctSubs[id]; s != nil {
		s.close()
		delete(a.acctSubs, id)
	}
}

func (a *authStore) closeAccountSubs() {
	for id := range a.acctSubs {
		a.unsubscribeAccount(id)
	}
}

func (s *authSub) close() {
	if s.ch != nil {
		close(s.ch)
	}
	if s.all != nil {
		close(s.all)
	}
}

func (a *authStore) currentStatus() messages.AuthStatus {
	if a.current == "" {
		return messages.AuthStatus{State: messages.Unauthenticated}
	}
	return messages.AuthStatus{State: messages.Authenticated, UID: a.current}
}

// publishStatus announces the current status if it is a real transition.
func (a *authStore) publishStatus(c actor.Context) {
	st := a.currentStatus()
	if st == a.status {
		return
	}
	a.status = st
	for _, s := range a.subs {
		a.deliver(c, s, st)
	}
}

func (a *authStore) deliver(c actor.Context, s *authSub, st messages.AuthStatus) {
	if s.pid != nil {
		c.Send(s.pid, &messages.AuthChanged{Status: st})
		return
	}
	offerNewest(s.ch, st)
}

// offerNewest puts v into ch, dropping the oldest queued values while ch is
// full. The actor is the only sender, so this never blocks.
func offerNewest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func (a *authStore) subscribe(c actor.Context, sender *actor.PID, m *messages.SubscribeAuth) {
	if m.UID != "" {
		if m.PID != nil {
			a.reply(c, sender, fail(errors.New("pigeon/actors: SubscribeAuth: UID goes with a channel subscription, not a PID")))
			return
		}
		a.nextSub++
		n := m.Buffer
		if n <= 0 {
			n = 16
		}
		s := &authSub{uid: m.UID, ch: make(chan messages.AuthStatus, n)}
		a.acctSubs[a.nextSub] = s
		st := messages.AuthStatus{State: messages.Unauthenticated, UID: m.UID}
		if a.accts[m.UID] != nil {
			st.State = messages.Authenticated
		}
		offerNewest(s.ch, st)
		a.reply(c, sender, &messages.AuthSubscription{ID: a.nextSub, C: s.ch})
		return
	}
	a.nextSub++
	s := &authSub{pid: m.PID, tokens: m.Tokens}
	if m.PID == nil {
		n := m.Buffer
		if n <= 0 {
			n = 16
		}
		s.ch = make(chan messages.AuthStatus, n)
	}
	a.subs[a.nextSub] = s
	a.deliver(c, s, a.status)
	if s.pid != nil && s.tokens {
		for _, acct := range a.accts {
			c.Send(s.pid, &messages.TokensChanged{Snapshot: a.snap(acct), Current: acct == a.accts[a.current]})
		}
	}
	a.reply(c, sender, &messages.AuthSubscription{ID: a.nextSub, C: s.ch})
}

// JWTExpiry returns the `exp` claim of a JWT-shaped token, read without
// verifying the signature (only to schedule a refresh), or the zero time.
func JWTExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp == "" {
		return time.Time{}
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}
