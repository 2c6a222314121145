package pigeon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// AccountStatus is one value of the all-accounts stream (SubscribeAccounts):
// UID's session started (Authenticated) or ended (Unauthenticated).
type AccountStatus = messages.AccountStatus

// ContextWithAccount returns a copy of ctx that selects account uid for
// every request made with it through an AuthorizedPigeon's verbs or its
// HTTPClient: the request carries uid's token, and a 401 refreshes uid's
// session only. So one *http.Client, handed to another SDK, serves every
// user. A uid the store does not hold fails the request with
// ErrUnknownAccount before anything is sent; "" selects the current
// account.
func ContextWithAccount(ctx context.Context, uid string) context.Context {
	return messages.ContextWithAccount(ctx, uid)
}

// Account is one stored account of an AuthorizedPigeon, used at the same
// time as the others (gateway mode): its verbs and HTTPClient carry its
// token and refresh its session only, whatever the current account is;
// its socket speaks for it and gets its token changes only. An Account
// takes nothing from the client until it opens a socket or a stream, so
// As may be called per request. All methods are safe for concurrent use.
//
// When the account is removed (RemoveAccount, LogOut while current, a
// refused refresh) the Account stops speaking for it: its socket is
// disconnected, new requests fail with ErrUnknownAccount, requests waiting
// for a refresh of the ended session with ErrLoggedOut or
// ErrSessionExpired. If the UID signs in again, the Account speaks for the
// new session.
type Account struct {
	p       *AuthorizedPigeon
	uid     string
	life    context.Context
	cancel  context.CancelCauseFunc
	tokens  actors.TokenClient // the client's, bound to uid
	client  *http.Client
	verbs   // as the account
	headers atomic.Pointer[http.Header]

	mu     sync.Mutex
	sock   *socketHolder // created by the first socket call
	subs   map[uint64]struct{}
	unsubs ctxUnsubscribers
	held   bool // registered with p.accounts
	closed bool
}

var _ AppPigeon = (*Account)(nil)

// As returns the account uid as an AppPigeon of its own; the current
// account is untouched. ErrUnknownAccount when the store does not hold
// uid. Close the Account when done with its socket or streams (the
// client's Close closes every Account).
func (p *AuthorizedPigeon) As(uid string) (*Account, error) {
	if p.closing.Load() {
		return nil, ErrClosed
	}
	if uid == "" || p.view.Account(uid) == nil {
		return nil, unknownAccount(uid)
	}
	a := &Account{p: p, uid: uid}
	// Inside the client's life: the client's Close ends the account's
	// requests too, so the account's transport has one lifetime to watch.
	a.life, a.cancel = context.WithCancelCause(p.life)
	empty := http.Header{}
	a.headers.Store(&empty)
	a.tokens = *p.tokens
	a.tokens.UID = uid
	// The client's transport, bound to the account, its headers and its
	// life (inside the client's).
	rt := *p.rt
	rt.Tokens, rt.Headers, rt.Life, rt.Scope = &a.tokens, a.defaultHeaders, a.life, nil
	a.client = newClient(p.cfg, withRetry(p.cfg, a.life, &rt))
	// An Account made for one request must stay cheap: its first
	// requests end with its life directly; one that serves more gets
	// the life's shards (Transport.Bind), made once.
	var served atomic.Int32
	bind := func(ctx context.Context) context.Context {
		if ctx.Done() == nil && served.Add(1) <= accountShardAfter {
			return rt.BindOnce(ctx)
		}
		return rt.Bind(ctx)
	}
	a.verbs = verbs{&httpCore{client: a.client, baseURL: p.cfg.baseURL, maxBody: p.cfg.maxBody, life: a.life, bind: bind}}
	return a, nil
}

// accountShardAfter is how many requests of an Account are bound to its
// life directly before it makes the life's shards.
const accountShardAfter = 16

func unknownAccount(uid string) error {
	return &accountError{uid: uid}
}

// accountError names the UID ErrUnknownAccount is about.
type accountError struct{ uid string }

func (e *accountError) Error() string {
	return "pigeon: account " + strconv.Quote(e.uid) + ": unknown account"
}
func (e *accountError) Unwrap() error { return ErrUnknownAccount }

// UID is the account's UID.
func (a *Account) UID() string { return a.uid }

// HTTPClient returns an *http.Client that sends every request as this
// account (whatever its context says), with the client's refresh, replay,
// default headers and middleware. After Close its requests fail with
// ErrClosed.
func (a *Account) HTTPClient() *http.Client { return a.client }

// UpdateHeaders changes this Account's own headers: each key is set, a
// key with an empty value is removed. They go with its requests (over the
// client's default headers, under the request's own) and its socket; the
// client and other Accounts are untouched.
func (a *Account) UpdateHeaders(h map[string]string) {
	updateHeaders(&a.headers, h)
	if s := a.socket(); s != nil {
		s.headersChanged()
	}
}

// defaultHeaders are the client's default headers under the Account's.
func (a *Account) defaultHeaders() http.Header {
	own := *a.headers.Load()
	base := a.p.defaultHeaders()
	if len(own) == 0 {
		return base
	}
	hdr := base.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	for k, vs := range own {
		hdr[k] = vs
	}
	return hdr
}

// hold registers the Account with its client, which closes it on Close;
// ErrClosed when either is closed.
func (a *Account) hold() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.held {
		return nil
	}
	if !a.p.accounts.add(a) {
		return ErrClosed
	}
	a.held = true
	return nil
}

// socket returns the Account's socket, nil when there is none.
func (a *Account) socket() *socketHolder {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sock
}

// openSocket returns the Account's socket, creating it (and registering
// the Account with its client) on first use; ErrClosed once either is
// closed.
func (a *Account) openSocket() (*socketHolder, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	if err := a.hold(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	if a.sock == nil {
		a.sock = newSocketHolder(a.p.socketEnvFor(a.uid, a.defaultHeaders, &a.tokens))
	}
	return a.sock, nil
}

func (a *Account) usable() error {
	if a.life.Err() != nil || a.p.closing.Load() {
		return ErrClosed
	}
	return nil
}

// SocketInit opens the Account's own socket, as AuthorizedPigeon.SocketInit
// does, with this account's token (Token "" follows its refreshes). A
// second Account of the same UID has a socket of its own.
func (a *Account) SocketInit(ctx context.Context, sp SocketConnectParams) error {
	s, err := a.openSocket()
	if err != nil {
		return err
	}
	return s.init(ctx, sp)
}

// Listen receives events of the Account's socket (see
// AuthorizedPigeon.Listen).
func (a *Account) Listen(ctx context.Context, event string) (*Subscription, error) {
	s, err := a.openSocket()
	if err != nil {
		return nil, err
	}
	return s.listen(ctx, event)
}

// Emit sends event on the Account's socket (see AuthorizedPigeon.Emit).
func (a *Account) Emit(ctx context.Context, event string, data any) error {
	_, err := a.emit(ctx, event, data, false)
	return err
}

// EmitWithAck emits on the Account's socket and waits for the server's
// acknowledgement.
func (a *Account) EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error) {
	return a.emit(ctx, event, data, true)
}

// emit emits, waiting for the ack when ack is set.
func (a *Account) emit(ctx context.Context, event string, data any, ack bool) (json.RawMessage, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	s := a.socket()
	if s == nil {
		return nil, ErrSocketNotInitialized
	}
	return s.emit(ctx, event, data, ack)
}

// DisconnectSocket closes the Account's socket (see
// AuthorizedPigeon.DisconnectSocket). Idempotent.
func (a *Account) DisconnectSocket() error {
	if s := a.socket(); s != nil {
		return s.disconnect()
	}
	return nil
}

// SubscribeAuth returns this account's status stream: its state first
// (Authenticated while the store holds it), then one value when its
// session ends (logout, removal, a refused refresh) or a new one starts —
// never one per refresh or switch. UID is set in every value. The channel
// holds 16 values; a reader that falls behind loses the oldest. It is
// closed when ctx ends or on Close (of the Account or its client).
func (a *Account) SubscribeAuth(ctx context.Context) (<-chan AuthStatus, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	if err := a.hold(); err != nil {
		return nil, err
	}
	sub, err := askAs[*messages.AuthSubscription](ctx, a.p, &messages.SubscribeAuth{UID: a.uid, Buffer: 16})
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.p.unsubscribe(sub.ID)
		return nil, ErrClosed
	}
	if a.subs == nil {
		a.subs = map[uint64]struct{}{}
	}
	a.subs[sub.ID] = struct{}{}
	a.mu.Unlock()
	a.unsubs.add(ctx, sub.ID, func() {
		a.mu.Lock()
		delete(a.subs, sub.ID)
		a.mu.Unlock()
		a.p.unsubscribe(sub.ID)
	})
	return sub.C, nil
}

// Close closes this Account only: its socket and its streams end, its
// requests in flight fail with ErrClosed, and every later call (Close
// included) returns ErrClosed. The client and its other Accounts are
// untouched.
func (a *Account) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.closed = true
	held, sock, subs := a.held, a.sock, a.subs
	a.subs = nil
	a.mu.Unlock()
	a.cancel(ErrClosed)
	if sock != nil {
		sock.close()
	}
	a.unsubs.close()
	for id := range subs {
		a.p.unsubscribe(id)
	}
	if held {
		a.p.accounts.remove(a)
	}
	return nil
}

// ended stops the socket of an Account whose account's session ended.
func (a *Account) ended() {
	if s := a.socket(); s != nil {
		_ = s.disconnect()
	}
}

func (p *AuthorizedPigeon) unsubscribe(id uint64) {
	p.system.Root.Send(p.storePID, &messages.UnsubscribeAuth{ID: id})
}

// SubscribeAccounts returns the all-accounts status stream: one
// AccountStatus when an account's session starts (SaveAuth or SaveNewAuth
// of an account not stored) and one when it ends (LogOut, RemoveAccount, a
// refused refresh) — never one per refresh, re-save or switch. Nothing is
// sent for the accounts already stored: call AllAuths after subscribing.
// The channel holds 1,024 values; a reader that falls behind loses the
// oldest (so it may miss transitions: size the reader, or re-read
// AllAuths) and never blocks pigeon. It is closed when ctx ends or on
// Close.
func (p *AuthorizedPigeon) SubscribeAccounts(ctx context.Context) (<-chan AccountStatus, error) {
	sub, err := askAs[*messages.AccountsSubscription](ctx, p, &messages.SubscribeAccounts{})
	if err != nil {
		return nil, err
	}
	p.unsubs.add(ctx, sub.ID, func() { p.unsubscribe(sub.ID) })
	return sub.C, nil
}

// accountSet is a client's Accounts that hold a socket or a stream, by
// UID, and the watcher actor that stops their sockets when their account's
// session ends. Its zero value is ready until start.
type accountSet struct {
	mu      sync.Mutex
	byUID   map[string]map[*Account]struct{}
	closed  bool
	watcher *actor.PID
	subID   uint64 // the watcher's SubscribeAccounts
	p       *AuthorizedPigeon
	wg      sync.WaitGroup // stops of ended Accounts' sockets
}

func (s *accountSet) start(p *AuthorizedPigeon) error {
	s.p = p
	s.byUID = map[string]map[*Account]struct{}{}
	s.watcher = p.system.Root.SpawnPrefix(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*messages.AccountChanged); ok &&
			m.Status.State == Unauthenticated && p.view.Account(m.Status.UID) == nil {
			s.endedAsync(m.Status.UID)
		}
	}), "pigeon-accounts")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := askAs[*messages.AccountsSubscription](ctx, p, &messages.SubscribeAccounts{PID: s.watcher})
	if err != nil {
		return fmt.Errorf("pigeon: opening auth store: %w", err)
	}
	s.subID = sub.ID
	return nil
}

func (s *accountSet) add(a *Account) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	m := s.byUID[a.uid]
	if m == nil {
		m = map[*Account]struct{}{}
		s.byUID[a.uid] = m
	}
	m[a] = struct{}{}
	return true
}

func (s *accountSet) remove(a *Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byUID[a.uid]; m != nil {
		delete(m, a)
		if len(m) == 0 {
			delete(s.byUID, a.uid)
		}
	}
}

func (s *accountSet) of(uid string) []*Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Account, 0, len(s.byUID[uid]))
	for a := range s.byUID[uid] {
		out = append(out, a)
	}
	return out
}

// ended stops the sockets of uid's Accounts and returns when they are.
func (s *accountSet) ended(uid string) {
	for _, a := range s.of(uid) {
		a.ended()
	}
}

// endedAsync is ended off the watcher's mailbox.
func (s *accountSet) endedAsync(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.byUID[uid]) == 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.ended(uid)
	}()
}

// close closes every Account and stops the watcher.
func (s *accountSet) close() {
	s.mu.Lock()
	s.closed = true
	var all []*Account
	for _, m := range s.byUID {
		for a := range m {
			all = append(all, a)
		}
	}
	s.mu.Unlock()
	if s.watcher != nil {
		if s.subID != 0 {
			s.p.unsubscribe(s.subID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = actors.StopAndWait(ctx, s.p.system, s.watcher)
		cancel()
	}
	for _, a := range all {
		_ = a.Close()
	}
	s.wg.Wait()
}

// SubscribeSocketState returns this account's socket state stream: the
// current state first, then every transition (see
// AuthorizedPigeon.SubscribeSocketState).
func (a *Account) SubscribeSocketState(ctx context.Context) (<-chan SocketStatus, error) {
	s, err := a.openSocket()
	if err != nil {
		return nil, err
	}
	return s.subscribeState(ctx)
}
