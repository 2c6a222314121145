package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
	"github.com/apppigeon/pigeon/transport"
)

// systemOptions are added to the actor system a client makes for itself
// (no WithActorSystem). Empty in a build; the package's tests shorten
// protoactor's dead-letter throttle with it, so the goroutine a dead
// letter starts ends before goleak looks (systemoptions_test.go).
var systemOptions []actors.SystemOption

// AppPigeon is the API both clients share: HTTP verbs and one socket.
// Code that holds an AppPigeon keeps working when a Switch changes mode.
type AppPigeon interface {
	Get(ctx context.Context, path string, opts ...RequestOption) (*Response, error)
	Post(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error)
	Put(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error)
	Patch(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error)
	Delete(ctx context.Context, path string, opts ...RequestOption) (*Response, error)
	SocketInit(ctx context.Context, p SocketConnectParams) error
	Listen(ctx context.Context, event string) (*Subscription, error)
	Emit(ctx context.Context, event string, data any) error
	// EmitWithAck emits and waits for the server's ack, returning its data.
	EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error)
	DisconnectSocket() error
	// SubscribeSocketState returns the socket's state stream (socket.go).
	SubscribeSocketState(ctx context.Context) (<-chan SocketStatus, error)
	// UpdateHeaders changes the default headers at run time: each key is
	// set, a key with an empty value is removed; a live socket gets them.
	UpdateHeaders(h map[string]string)
	// HTTPClient returns an *http.Client that authenticates like the
	// verbs, for SDKs that take one.
	HTTPClient() *http.Client
	// Close disposes the client, the same way on every client: in-flight
	// work is cancelled; waiters and every later call (Close included)
	// get ErrClosed; no goroutine is left. The first call returns nil
	// unless releasing something failed.
	Close() error
}

// Secret is a token or key; it redacts itself wherever it is printed or
// logged. string(s) is the value.
type Secret = messages.Secret

// AuthRecord is one account's stored credentials.
type AuthRecord = messages.AuthRecord

// AuthState is Unauthenticated (the zero value) or Authenticated.
type AuthState = messages.AuthState

// AuthStatus is one value of the auth-status stream.
type AuthStatus = messages.AuthStatus

// Auth states.
const (
	Unauthenticated = messages.Unauthenticated
	Authenticated   = messages.Authenticated
)

// SaveAuthParams is a login's result, for SaveNewAuth and SaveAuth. Data
// is any JSON value the application keeps with the account
// (json.RawMessage is stored as is).
type SaveAuthParams struct {
	UID          string
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	Data         any
}

// AuthorizedPigeon is the client for signed-in users: typed HTTP verbs that
// carry the current account's token, refresh on 401 with one refresh in
// flight per account, several accounts with a current one, an auth-status
// stream and sockets. It also serves many accounts at once (gateway mode):
// As, ContextWithAccount, SaveAuth and SubscribeAccounts. All methods are
// safe for concurrent use.
type AuthorizedPigeon struct {
	cfg        *config
	log        *zap.Logger
	system     *actor.ActorSystem
	ownSystem  bool
	store      persistence.Store
	storePID   *actor.PID
	coordPID   *actor.PID
	view       *actors.TokenView
	tokens     *actors.TokenClient
	rt         *transport.Transport // the authorized transport of http (under WithRetry's layer when set)
	http       *httpCore
	verbs      // Get, Post, Put, Patch, Delete over http
	refresh    *RefreshClient
	base       http.RoundTripper
	ownBase    bool
	headers    atomic.Pointer[http.Header]
	life       context.Context
	lifeCancel context.CancelCauseFunc
	closing    atomic.Bool
	closeOnce  sync.Once

	unsubs ctxUnsubscribers // SubscribeAuth streams bound to their ctx
	// refreshUnsubs are the SubscribeRefreshes streams (the coordinator's
	// IDs, apart from the store's).
	refreshUnsubs ctxUnsubscribers

	sock *socketHolder

	accounts accountSet // the Accounts (As) holding sockets or streams
}

var _ AppPigeon = (*AuthorizedPigeon)(nil)

// NewAuthorized builds an authorized client around refresher (for example
// JSONRefresher{Path: "/auth/refresh"} or an OAuth2Refresher). It opens the
// token store (encrypted on disk unless WithInMemoryStore), spawns the
// AuthStore and RefreshCoordinator actors and returns when they are ready.
func NewAuthorized(refresher RefreshTokenManager, opts ...Option) (*AuthorizedPigeon, error) {
	if refresher == nil {
		return nil, errors.New("pigeon: NewAuthorized: nil RefreshTokenManager")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	store, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	p := &AuthorizedPigeon{cfg: cfg, log: cfg.logger, store: store, view: &actors.TokenView{}}
	p.life, p.lifeCancel = context.WithCancelCause(context.Background())
	p.headers.Store(&cfg.headers)
	p.system = cfg.system
	if p.system == nil {
		p.system = actors.NewSystem(cfg.logger, systemOptions...)
		p.ownSystem = true
	}
	p.base, p.ownBase = baseTransport(cfg)
	plain := withMiddleware(p.base, cfg.middleware)
	server := &serverClock{now: cfg.now}
	p.refresh = &RefreshClient{
		core: &httpCore{client: newClient(cfg, &transport.Transport{Base: observeDates{plain, server}, Tokens: noTokens{}, Headers: p.defaultHeaders, Life: p.life}), baseURL: cfg.baseURL, maxBody: cfg.maxBody, life: p.life},
		now:  cfg.now, server: server,
	}

	root := p.system.Root.Copy().WithGuardian(actor.NewOneForOneStrategy(10, time.Minute, actor.DefaultDecider))
	p.storePID = root.SpawnPrefix(actors.NewAuthStoreProps(store,
		actors.WithView(p.view), actors.WithAuthStoreLogger(cfg.logger), actors.WithAuthStoreClock(cfg.now)), "pigeon-authstore")
	ropts := []actors.RefreshOption{actors.WithRefreshLogger(cfg.logger), actors.WithRefreshClock(cfg.now),
		actors.WithRefreshWindows(cfg.refreshAhead, 0), actors.WithRefreshObserver(flightObserver(cfg))}
	if cfg.refreshTimeout > 0 {
		ropts = append(ropts, actors.WithRefreshTimeout(cfg.refreshTimeout))
	}
	p.coordPID = root.SpawnPrefix(actors.NewRefreshCoordinatorProps(p.storePID, p.view, fleetRefresh(store, p.refreshFunc(refresher)), ropts...), "pigeon-refresh")
	p.tokens = &actors.TokenClient{System: p.system, Coordinator: p.coordPID, View: p.view, Now: cfg.now, Ahead: cfg.refreshAhead}

	p.rt, p.http = buildHTTP(cfg, p.life, plain, p.tokens, refresher.ShouldRefresh, p.defaultHeaders)
	p.http.refusedCause = p.refusedCause
	p.verbs = verbs{p.http}
	p.sock = newSocketHolder(p.socketEnv())
	if err := p.accounts.start(p); err != nil {
		_ = p.Close()
		return nil, err
	}

	// Wait until the store has loaded, so the first request sees the
	// stored account.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := actors.AskAs[*messages.AuthList](ctx, p.system, p.storePID, &messages.ListAuths{}); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("pigeon: opening auth store: %w", err)
	}
	if err := p.startFleet(); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

func openStore(cfg *config) (persistence.Store, error) {
	if cfg.etcd != nil {
		return openFleet(cfg)
	}
	if cfg.inMemory {
		return persistence.NewMemory(), nil
	}
	dir := cfg.storeDir
	if dir == "" {
		d, err := persistence.DefaultDir(cfg.storeName)
		if err != nil {
			return nil, fmt.Errorf("pigeon: %w", err)
		}
		dir = d
	}
	opts := []persistence.Option{persistence.WithLogger(cfg.logger)}
	if cfg.encryptionKey != nil {
		opts = append(opts, persistence.WithEncryptionKey(cfg.encryptionKey))
	}
	s, err := persistence.OpenBadger(dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("pigeon: %w", err)
	}
	return s, nil
}

func (p *AuthorizedPigeon) refreshFunc(m RefreshTokenManager) actors.RefreshFunc {
	return func(ctx context.Context, _ string, rt messages.Secret) (messages.RefreshedTokens, error) {
		r, err := m.RefreshToken(ctx, string(rt), p.refresh)
		if err != nil {
			return messages.RefreshedTokens{}, err
		}
		if r.ExpiresAt.IsZero() {
			r.ExpiresAt = p.refresh.server.jwtExpiry(r.AccessToken) // the server's clock
		}
		return messages.RefreshedTokens{
			AccessToken: Secret(r.AccessToken), RefreshToken: Secret(r.RefreshToken),
			ExpiresAt: r.ExpiresAt, Data: r.Data,
		}, nil
	}
}

// refusedCause says why a 401 was beyond pigeon's control: no account was
// signed in, so the request went without a bearer. A request for a named
// account (ContextWithAccount) always carried one.
func (p *AuthorizedPigeon) refusedCause(ctx context.Context) error {
	if messages.AccountFromContext(ctx) == "" && p.view.Current() == nil {
		return ErrNoAuth
	}
	return nil
}

func (p *AuthorizedPigeon) defaultHeaders() http.Header { return *p.headers.Load() }

// UpdateHeaders changes the default headers at run time: each key is set,
// and a key with an empty value is removed. New requests use them at once;
// a live socket receives them as an `update` (no reconnect).
func (p *AuthorizedPigeon) UpdateHeaders(h map[string]string) {
	updateHeaders(&p.headers, h)
	p.sock.headersChanged()
}

func updateHeaders(ptr *atomic.Pointer[http.Header], h map[string]string) {
	for {
		old := ptr.Load()
		next := (*old).Clone()
		if next == nil {
			next = http.Header{}
		}
		for k, v := range h {
			if v == "" {
				next.Del(k)
			} else {
				next.Set(k, v)
			}
		}
		if ptr.CompareAndSwap(old, &next) {
			return
		}
	}
}

// HTTPClient returns an *http.Client with the same auth, refresh, replay,
// default headers and middleware, for use by any other SDK. It stays valid
// until Close; after Close its requests fail with ErrClosed. A request
// whose context names an account (ContextWithAccount) is sent as that
// account, so one client serves every user; other requests are sent as the
// current account.
func (p *AuthorizedPigeon) HTTPClient() *http.Client { return p.http.client }

func (p *AuthorizedPigeon) ask(ctx context.Context, msg any) (any, error) {
	return askAs[any](ctx, p, msg)
}

// askAs asks the auth store and checks the reply's type (actors.AskAs);
// after Close it answers ErrClosed.
func askAs[T any](ctx context.Context, p *AuthorizedPigeon, msg any) (T, error) {
	var zero T
	if p.closing.Load() {
		return zero, ErrClosed
	}
	r, err := actors.AskAs[T](ctx, p.system, p.storePID, msg)
	if err != nil && p.closing.Load() && ctx.Err() == nil {
		return zero, ErrClosed
	}
	return r, err
}

// SaveNewAuth stores a login's tokens (one synced write) and makes the
// account current.
func (p *AuthorizedPigeon) SaveNewAuth(ctx context.Context, a SaveAuthParams) error {
	return p.saveAuth(ctx, "SaveNewAuth", a, true)
}

// SaveAuth stores a login's tokens (one synced write) without switching:
// the current account, its requests and the SubscribeAuth stream are left
// alone. A new account starts its session (SubscribeAccounts sees it
// Authenticated) and is ready for As and ContextWithAccount as soon as
// SaveAuth returns; saving an account already stored replaces its tokens
// within its session (its sockets get them).
func (p *AuthorizedPigeon) SaveAuth(ctx context.Context, a SaveAuthParams) error {
	return p.saveAuth(ctx, "SaveAuth", a, false)
}

func (p *AuthorizedPigeon) saveAuth(ctx context.Context, op string, a SaveAuthParams, makeCurrent bool) error {
	if a.UID == "" || a.AccessToken == "" {
		return fmt.Errorf("pigeon: %s needs UID and AccessToken", op)
	}
	rec := AuthRecord{UID: a.UID, AccessToken: Secret(a.AccessToken), RefreshToken: Secret(a.RefreshToken), ExpiresAt: a.ExpiresAt, IssuedAt: p.cfg.now()}
	if rec.ExpiresAt.IsZero() {
		// A JWT's exp is the server's clock (the offset the refresh
		// client last saw; none before its first answer).
		rec.ExpiresAt = p.refresh.server.jwtExpiry(a.AccessToken)
	}
	if a.Data != nil {
		switch d := a.Data.(type) {
		case json.RawMessage:
			rec.Data = append(json.RawMessage(nil), d...)
		default:
			b, err := json.Marshal(d)
			if err != nil {
				return fmt.Errorf("pigeon: %s: encoding Data: %w", op, err)
			}
			rec.Data = b
		}
	}
	_, err := askAs[*messages.SavedAuth](ctx, p, &messages.SaveAuth{Record: rec, MakeCurrent: makeCurrent})
	return err
}

// CurrentAuth returns the current account's record, ErrNoAuth when signed
// out.
func (p *AuthorizedPigeon) CurrentAuth(ctx context.Context) (AuthRecord, error) {
	r, err := askAs[*messages.CurrentAuth](ctx, p, &messages.GetCurrentAuth{})
	if err != nil {
		return AuthRecord{}, err
	}
	return r.Record, nil
}

// AllAuths returns every stored account, sorted by UID.
func (p *AuthorizedPigeon) AllAuths(ctx context.Context) ([]AuthRecord, error) {
	r, err := askAs[*messages.AuthList](ctx, p, &messages.ListAuths{})
	if err != nil {
		return nil, err
	}
	return r.Records, nil
}

// SwitchAccount makes a stored account current (ErrUnknownAccount if the
// store does not hold uid).
// Requests already waiting for a refresh finish as the account they were
// sent as; new requests use the new account, and a live socket that
// follows the current account gets its headers as an `update`.
func (p *AuthorizedPigeon) SwitchAccount(ctx context.Context, uid string) error {
	_, err := p.ask(ctx, &messages.SwitchAccount{UID: uid})
	return err
}

// RemoveAccount removes a stored account's tokens, current or not
// (ErrUnknownAccount if the store does not hold uid). Removing the current
// account is LogOut: there is no current account afterwards, requests of
// that session still waiting fail with ErrLoggedOut, and the socket, which
// spoke for it, is disconnected. Removing another account leaves the
// current one and its socket alone.
//
// The Accounts (As) of uid are stopped speaking for it: their sockets are
// disconnected before RemoveAccount returns and their requests fail with
// ErrUnknownAccount (those waiting for a refresh of the removed session
// with ErrLoggedOut).
func (p *AuthorizedPigeon) RemoveAccount(ctx context.Context, uid string) error {
	r, err := askAs[*messages.LoggedOut](ctx, p, &messages.RemoveAccount{UID: uid})
	if err != nil {
		return err
	}
	if r.WasCurrent {
		_ = p.sock.disconnectFor(ErrLoggedOut)
	}
	p.accounts.ended(uid)
	return nil
}

// LogOut removes the current account's tokens; there is no current account
// afterwards. Requests of that session still waiting fail with
// ErrLoggedOut. The socket, which spoke for that account, is disconnected
// (its subscriptions end with ErrClosed).
func (p *AuthorizedPigeon) LogOut(ctx context.Context) error {
	_, err := p.ask(ctx, &messages.LogOut{})
	if err == nil {
		_ = p.sock.disconnectFor(ErrLoggedOut)
	}
	return err
}

// SubscribeAuth returns the auth-status stream: the current status first,
// then one value per real transition (login, switch, logout, expiry) —
// never one per refresh. The channel holds 16 values; a reader that falls
// behind loses the oldest, so it always ends on the newest status, and
// never blocks pigeon. It is closed when ctx ends or on Close.
func (p *AuthorizedPigeon) SubscribeAuth(ctx context.Context) (<-chan AuthStatus, error) {
	sub, err := askAs[*messages.AuthSubscription](ctx, p, &messages.SubscribeAuth{Buffer: 16})
	if err != nil {
		return nil, err
	}
	p.unsubs.add(ctx, sub.ID, func() { p.system.Root.Send(p.storePID, &messages.UnsubscribeAuth{ID: sub.ID}) })
	return sub.C, nil
}

// Actors returns the PIDs of the client's AuthStore and
// RefreshCoordinator and its ActorSystem, for callers that talk to them
// with package messages directly.
func (p *AuthorizedPigeon) Actors() (system *actor.ActorSystem, authStore, refreshCoordinator *actor.PID) {
	return p.system, p.storePID, p.coordPID
}

// Close disposes the client as AppPigeon.Close says: in-flight requests
// and waiters get ErrClosed, sockets close, the actors stop, the store is
// closed and (unless the system was given with WithActorSystem) the actor
// system shuts down. The first call returns the first error met.
func (p *AuthorizedPigeon) Close() error {
	err := ErrClosed
	p.closeOnce.Do(func() {
		err = p.close()
	})
	return err
}

func (p *AuthorizedPigeon) close() error {
	p.closing.Store(true)
	p.lifeCancel(ErrClosed)
	var errs []error
	p.sock.close()
	p.accounts.close()
	p.unsubs.close()
	p.refreshUnsubs.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pid := range []*actor.PID{p.coordPID, p.storePID} {
		if err := actors.StopAndWait(ctx, p.system, pid); err != nil {
			errs = append(errs, fmt.Errorf("pigeon: stopping %s: %w", pid.Id, err))
		}
	}
	if err := p.store.Close(); err != nil && !errors.Is(err, ErrClosed) {
		errs = append(errs, fmt.Errorf("pigeon: closing store: %w", err))
	}
	if p.ownBase {
		if t, ok := p.base.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
	if p.ownSystem {
		p.system.Shutdown()
	}
	return errors.Join(errs...)
}

// noTokens is the TokenSource of the plain (refresh) client: no bearer.
type noTokens struct{}

func (noTokens) Token(context.Context) (*messages.TokenSnapshot, error) { return nil, nil }
func (noTokens) Unauthorized(context.Context, *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	return nil, errors.New("pigeon: no refresh on the plain client")
}
