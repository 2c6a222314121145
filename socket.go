package pigeon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// SocketConnectParams says where the socket connects. Token "" means the
// stored (current) token, kept fresh: a refresh reaches the live connection
// as an `update` (socket.io: a reconnect with the new auth payload that
// resumes the session, see WithSocketIOTokenUpdate). A URL whose path contains "/socket.io" speaks socket.io
// v4; any other URL pigeon.v1. JoinID, when set, is joined after the
// handshake (pigeon.v1 `join`; socket.io: the join event, "join" unless
// WithSocketIOJoinEvent). Namespace is the socket.io namespace ("" = the
// main namespace "/"; "chat" means "/chat"); a socket.io URL whose path
// goes on after "/socket.io/" is an error rather than the main namespace,
// and pigeon.v1 has no namespaces.
type SocketConnectParams struct {
	Token     string
	URL       string
	JoinID    string
	Namespace string
}

// Event is one socket event: Name and its JSON Data, plus the Channel and
// stream Position it came from (pigeon.v1) and Gap for a gap event (the
// server could not replay what was missed while reconnecting).
type Event = messages.SocketEvent

// OverflowPolicy is what a full listener queue does.
type OverflowPolicy = messages.OverflowPolicy

// Listener overflow policies.
const (
	DropOldest        = messages.OverflowDropOldest
	DropNewest        = messages.OverflowDropNewest
	CloseSlowConsumer = messages.OverflowClose
)

// SocketInterceptor sees, changes or drops every frame in and out (mid's
// message interceptors). It runs inside the socket actor: fast, never
// blocking.
type SocketInterceptor = actors.SocketInterceptor

// Subscription receives every event of one name. C is closed when the
// subscription ends; Err says why (ErrClosed after Close or
// DisconnectSocket, ErrSlowConsumer under CloseSlowConsumer, the terminal
// socket error otherwise). Safe for concurrent use.
type Subscription struct {
	C <-chan Event
	l *actors.SocketListener
}

// Close ends the subscription; C closes shortly after. Idempotent.
func (s *Subscription) Close() error { return s.l.Close() }

// Err says why C was closed (nil while open).
func (s *Subscription) Err() error { return s.l.Err() }

// Dropped counts events this subscription's queue dropped.
func (s *Subscription) Dropped() uint64 { return s.l.Dropped() }

type socketConfig struct {
	clock        clock.Clock // WithClock's
	reconnect    *ReconnectPolicy
	readLimit    int64
	handshake    time.Duration
	tls          *tls.Config
	pingInterval time.Duration
	pingGrace    time.Duration
	lazy         bool
	linger       time.Duration
	queue        int
	policy       OverflowPolicy
	bufCount     int
	bufBytes     int
	emitRetries  int
	ackTimeout   time.Duration
	interceptors []SocketInterceptor
	sioOpts      []wire.SocketIOOption
	observer     actors.SocketObserver // nil: no telemetry (WithTracerProvider, WithMeterProvider)
}

func defaultSocketConfig() socketConfig { return socketConfig{} }

// SocketState is a socket's lifecycle state as SubscribeSocketState
// reports it.
type SocketState = messages.SocketState

// The states of a socket's state stream. SocketClosed is the end of a
// socket: on purpose (DisconnectSocket, Close: Err matches ErrClosed) or
// not (Err says why: ErrReconnectExhausted, a terminal close code, a
// rejection). A SocketInit after it starts a new socket, whose states
// follow on the same stream.
const (
	SocketIdle         = messages.SocketIdle
	SocketConnecting   = messages.SocketConnecting
	SocketConnected    = messages.SocketConnected
	SocketReconnecting = messages.SocketReconnecting
	SocketClosed       = messages.SocketClosed
)

// SocketStatus is one entry of the state stream: State, the reconnect
// Attempt and the Delay before it (SocketReconnecting), Recovered (a
// SocketConnected after a lost connection on which the server replayed
// everything missed on the JoinID channel) and Err, the cause.
type SocketStatus = messages.SocketStatus

// ErrReconnectExhausted: the socket ran out of reconnect attempts
// (WithReconnect's MaxAttempts). The socket is SocketClosed with it; Emit
// and Listen return it until the next SocketInit.
var ErrReconnectExhausted = messages.ErrReconnectExhausted

// ReconnectPolicy bounds a socket's reconnects: attempt n waits uniformly
// in [0, min(MaxDelay, MinDelay·2ⁿ)] (full jitter); after MaxAttempts
// consecutive failed attempts the socket ends with ErrReconnectExhausted.
// Zero values: unlimited attempts, 200ms, 20s.
type ReconnectPolicy struct {
	MaxAttempts        int
	MinDelay, MaxDelay time.Duration
}

// WithReconnect sets the socket's reconnect policy. Negative values, or a
// MaxDelay below MinDelay, are an error. Zero value (option absent):
// unlimited attempts between 200ms and 20s.
func WithReconnect(p ReconnectPolicy) Option {
	return optionFunc(func(c *config) error {
		if p.MaxAttempts < 0 || p.MinDelay < 0 || p.MaxDelay < 0 {
			return fmt.Errorf("pigeon: WithReconnect: negative value in %+v", p)
		}
		if p.MaxDelay != 0 && p.MaxDelay < p.MinDelay {
			return fmt.Errorf("pigeon: WithReconnect: MaxDelay %v below MinDelay %v", p.MaxDelay, p.MinDelay)
		}
		c.socket.reconnect = &p
		return nil
	})
}

// WithSocketReadLimit sets the largest server message the socket accepts;
// a larger one ends the socket with close 1009 (a *SocketCloseError).
// Zero value (option absent): 1 MiB.
func WithSocketReadLimit(bytes int64) Option {
	return optionFunc(func(c *config) error {
		if bytes <= 0 {
			return errors.New("pigeon: WithSocketReadLimit: not positive")
		}
		c.socket.readLimit = bytes
		return nil
	})
}

// WithSocketHandshakeTimeout bounds the websocket opening handshake. Zero
// value (option absent): 10s.
func WithSocketHandshakeTimeout(d time.Duration) Option {
	return positiveDuration("WithSocketHandshakeTimeout", d, func(c *socketConfig) { c.handshake = d })
}

// positiveDuration is an option that sets a duration that must be
// positive.
func positiveDuration(name string, d time.Duration, set func(*socketConfig)) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return errors.New("pigeon: " + name + ": not positive")
		}
		set(&c.socket)
		return nil
	})
}

// WithSocketTLSConfig sets the TLS configuration of wss:// connections
// (cloned; not changed afterwards). Zero value (option absent): the
// TLSClientConfig of WithHTTPClient's transport when it is an
// *http.Transport, else crypto/tls defaults. The socket takes that
// transport's Proxy and DialContext too, so the socket and HTTP reach the
// server the same way.
func WithSocketTLSConfig(cfg *tls.Config) Option {
	return optionFunc(func(c *config) error {
		if cfg == nil {
			return errors.New("pigeon: WithSocketTLSConfig: nil")
		}
		c.socket.tls = cfg.Clone()
		return nil
	})
}

// WithSocketPing sets pigeon.v1's keep-alive: a ping every interval, and
// a connection without server traffic for interval+grace is lost (and
// reconnected). A server's init_ack pingIntervalMs overrides the
// interval; socket.io always uses the server's pingInterval and
// pingTimeout. Server values are clamped to [1s, 10m]. Zero value (option
// absent): 25s and 10s.
func WithSocketPing(interval, grace time.Duration) Option {
	return optionFunc(func(c *config) error {
		if interval <= 0 || grace <= 0 {
			return errors.New("pigeon: WithSocketPing: interval and grace must be positive")
		}
		c.socket.pingInterval, c.socket.pingGrace = interval, grace
		return nil
	})
}

// socketDial is the websocket dial of c's sockets: the socket options,
// and what WithHTTPClient's *http.Transport says about reaching servers.
func socketDial(c *config) ws.DialConfig {
	d := ws.DialConfig{ReadLimit: c.socket.readLimit, HandshakeTimeout: c.socket.handshake, TLSClientConfig: c.socket.tls}
	if c.httpClient != nil {
		if t, ok := c.httpClient.Transport.(*http.Transport); ok {
			if d.TLSClientConfig == nil && t.TLSClientConfig != nil {
				d.TLSClientConfig = t.TLSClientConfig.Clone()
			}
			d.Proxy, d.NetDialContext = t.Proxy, t.DialContext
		}
	}
	return d
}

// WithLazySocket opens the socket only while listeners exist (mid's
// behaviour): SocketInit records where to connect; the first Listen (or
// Emit) dials; after the last listener closes the connection leaves and
// closes after linger. Zero value (option absent): eager, SocketInit
// connects and stays connected until DisconnectSocket (app_pigeon's).
func WithLazySocket(linger time.Duration) Option {
	return optionFunc(func(c *config) error {
		if linger < 0 {
			return errors.New("pigeon: WithLazySocket: negative linger")
		}
		c.socket.lazy, c.socket.linger = true, linger
		return nil
	})
}

// WithListenerQueue sets each listener's queue size and overflow policy.
// Zero value: 256, DropOldest.
func WithListenerQueue(size int, policy OverflowPolicy) Option {
	return optionFunc(func(c *config) error {
		if size <= 0 || policy < DropOldest || policy > CloseSlowConsumer {
			return fmt.Errorf("pigeon: WithListenerQueue: bad size %d or policy %d", size, policy)
		}
		c.socket.queue, c.socket.policy = size, policy
		return nil
	})
}

// WithEmitBuffer bounds the emits buffered while the socket is
// disconnected and, on pigeon.v1 (and socket.io with WithEmitRetries),
// those written but not yet acknowledged; an Emit beyond them fails at
// once with ErrBufferFull. Zero value: 64 emits, 1 MiB.
func WithEmitBuffer(count, bytes int) Option {
	return optionFunc(func(c *config) error {
		if count <= 0 || bytes <= 0 {
			return errors.New("pigeon: WithEmitBuffer: bounds must be positive")
		}
		c.socket.bufCount, c.socket.bufBytes = count, bytes
		return nil
	})
}

// WithEmitRetries makes socket.io emits at-least-once, as socket.io-client
// 4.6's `retries` option does: every emit asks for an ack and is written
// again (the same ack id, so a server may dedupe) when a try got no ack
// within WithAckTimeout or its connection was lost, up to n more times;
// then EmitWithAck fails with ErrAckTimeout and a plain Emit is counted in
// SocketStatus.EmitsDropped. pigeon.v1 needs no option: its emits are
// exactly-once (see Emit). Zero value (option absent): socket.io emits are
// written once.
func WithEmitRetries(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 0 {
			return errors.New("pigeon: WithEmitRetries: negative")
		}
		c.socket.emitRetries = n
		return nil
	})
}

// WithAckTimeout bounds every socket request that waits for the server
// (init, join, update, EmitWithAck). Zero value: 10s.
func WithAckTimeout(d time.Duration) Option {
	return positiveDuration("WithAckTimeout", d, func(c *socketConfig) { c.ackTimeout = d })
}

// WithSocketInterceptor adds a frame interceptor; interceptors run in the
// order given. Zero value: none.
func WithSocketInterceptor(f SocketInterceptor) Option {
	return optionFunc(func(c *config) error {
		if f == nil {
			return errors.New("pigeon: WithSocketInterceptor: nil")
		}
		c.socket.interceptors = append(c.socket.interceptors, f)
		return nil
	})
}

// SocketIOTokenUpdate is how a new token reaches a socket.io server.
type SocketIOTokenUpdate = wire.TokenUpdate

const (
	// SocketIOReconnect (the default): close the transport and connect
	// again at once with the new auth payload; a server with
	// connectionStateRecovery resumes the session and replays what was
	// sent meanwhile (SocketStatus.Recovered), so nothing is lost. A
	// stock server needs no handler.
	SocketIOReconnect = wire.TokenUpdateReconnect
	// SocketIOUpdateEvent: emit "update" with the auth payload on the live
	// connection; the server must handle it (docs/socket.md).
	SocketIOUpdateEvent = wire.TokenUpdateEvent
)

// WithSocketIOTokenUpdate sets how a new token reaches a socket.io
// server. Zero value (option absent): SocketIOReconnect.
func WithSocketIOTokenUpdate(m SocketIOTokenUpdate) Option {
	return optionFunc(func(c *config) error {
		if m != SocketIOReconnect && m != SocketIOUpdateEvent {
			return fmt.Errorf("pigeon: WithSocketIOTokenUpdate: unknown mode %d", m)
		}
		c.socket.sioOpts = append(c.socket.sioOpts, wire.WithTokenUpdate(m))
		return nil
	})
}

// SocketArgs sends several arguments in one socket.io Emit (each a []byte,
// sent as a binary attachment, a json.RawMessage, or any value
// encoding/json takes). pigeon.v1 refuses it.
type SocketArgs []any

// SocketArg is one argument of a socket.io event (Event.Args): Binary for
// a binary attachment, JSON otherwise.
type SocketArg = messages.SocketArg

// ErrServerDisconnect: the socket.io server ended the session on purpose
// (socket.disconnect()). As with the reference client the socket does not
// reconnect: it is SocketClosed with this error.
var ErrServerDisconnect = messages.ErrServerDisconnect

// ErrAlreadyAcked: Event.Ack was called again; the server's ack request
// is answered once.
var ErrAlreadyAcked = messages.ErrAlreadyAcked

// WithSocketIOJoinEvent names the event that carries JoinID on socket.io
// connections. Zero value: "join".
func WithSocketIOJoinEvent(name string) Option {
	return optionFunc(func(c *config) error {
		if name == "" {
			return errors.New("pigeon: WithSocketIOJoinEvent: empty name")
		}
		c.socket.sioOpts = append(c.socket.sioOpts, wire.WithJoinEvent(name))
		return nil
	})
}

// ErrInsecureBearer: a bearer token would travel over plain http or ws to
// a host that is not loopback (see WithInsecureHTTP). The HTTP requests and
// SocketInit fail with it; nothing is sent.
var ErrInsecureBearer = transport.ErrInsecureBearer

// ErrUntrustedHost: SocketInit was asked to carry the bearer token to a
// host the client does not trust with it (trusted: the WithBaseURL host
// and WithAuthHosts). Nothing is dialed.
var ErrUntrustedHost = errors.New("pigeon: host not trusted with the bearer token")

// ErrActorRestarted: a socket's actor was restarted after an internal
// failure; the subscriptions and requests it had ended with this error.
var ErrActorRestarted = messages.ErrActorRestarted

// PanicError is a panic of user code pigeon called (a SocketInterceptor),
// turned into an error: the socket ends with it.
type PanicError = messages.PanicError

// socketEnv is what a client gives its socket.
type socketEnv struct {
	// dial is the websocket dial configuration (socketDial).
	dial ws.DialConfig
	// store is the AuthStore whose token changes the socket follows
	// itself (nil: a ghost, whose bearer is pushed with UpdateHeaders).
	store *actor.PID
	// uid is the account the socket follows in store; "" means the
	// current account.
	uid string
	// system returns the actor system sockets are spawned in (created on
	// first use by a ghost client).
	system func() *actor.ActorSystem
	logger *zap.Logger
	cfg    socketConfig
	// policy says which socket URLs may carry the bearer: the HTTP rule.
	policy transport.BearerPolicy
	// authorized: the client always sends a bearer (a ghost only while it
	// has a token).
	authorized bool
	// headers returns the handshake headers; rejected non-nil asks for
	// fresh ones (the server refused those).
	headers func(ctx context.Context, rejected http.Header) (http.Header, error)
	// current returns the headers as they are now, without waiting (for
	// live updates).
	current func() http.Header
}

// socketPolicy is the bearer rule of c's HTTP Transport, for sockets.
func socketPolicy(c *config) transport.BearerPolicy {
	return transport.BearerPolicy{Hosts: authHosts(c), AllowInsecure: c.allowInsecure}
}

// socketRun is one SocketConn actor; life ends once the actor has stopped,
// which fails the requests still waiting for it (a request queued behind
// the actor's stop is dropped by protoactor without a reply).
type socketRun struct {
	pid  *actor.PID
	life context.Context
	end  context.CancelFunc
	// cause is why the holder ended this run on purpose (disconnectFor:
	// ErrLoggedOut); a SocketInit still waiting for it returns that rather
	// than the ErrClosed its actor answers. Guarded by socketHolder.mu.
	cause error
}

// socketHolder owns a client's one socket connection: the SocketConn
// actor, replaced by SocketInit and removed by DisconnectSocket, and the
// subscriptions made before SocketInit.
type socketHolder struct {
	env    socketEnv
	mu     sync.Mutex
	sys    *actor.ActorSystem // set with the first actor
	run    *socketRun
	static string // SocketConnectParams.Token, "" = follow the client
	sio    bool   // the socket speaks socket.io
	strip  bool   // the socket's URL may not carry the bearer
	closed bool
	// disconnected: DisconnectSocket ended the socket on purpose; Listen
	// fails until the next SocketInit.
	disconnected bool
	early        []*actors.SocketListener // Listen before SocketInit
	// status is the state stream of every socket this holder opens.
	status *actors.SocketStatusFeed
}

// newSocketHolder returns the holder of one socket; env.uid binds it to
// one account ("" = the current one).
func newSocketHolder(env socketEnv) *socketHolder {
	return &socketHolder{env: env, status: actors.NewSocketStatusFeed()}
}

// socketAsk is actors.AskAs bound to run: when run's actor has stopped
// the request fails with actors.ErrNoReply instead of waiting for ctx
// (without a context of its own per request: Emit's hot path).
func socketAsk[T any](ctx context.Context, sys *actor.ActorSystem, run *socketRun, msg any) (T, error) {
	return actors.AskAsUntil[T](ctx, run.life.Done(), sys, run.pid, msg)
}

// withBearer sets the socket's bearer on hdr, or removes any when the
// socket's URL may not carry one.
func withBearer(hdr http.Header, static string, strip bool) http.Header {
	switch {
	case strip:
		hdr.Del("Authorization")
	case static != "":
		hdr.Set("Authorization", "Bearer "+static)
	}
	return hdr
}

func (h *socketHolder) headersFor(static string, strip bool) func(context.Context, http.Header) (http.Header, error) {
	if static == "" && !strip {
		return h.env.headers
	}
	return func(ctx context.Context, rejected http.Header) (http.Header, error) {
		if static != "" {
			return withBearer(h.env.current(), static, strip), nil
		}
		hdr, err := h.env.headers(ctx, rejected)
		if err != nil {
			return nil, err
		}
		return withBearer(hdr, "", strip), nil
	}
}

// bearerRule applies the HTTP bearer rule to the socket URL: an error when
// the socket would carry the bearer where the client may not send it;
// strip when it carries none now and must never carry one.
func (h *socketHolder) bearerRule(p SocketConnectParams) (strip bool, err error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return false, fmt.Errorf("pigeon: SocketInit: bad URL: %w", err)
	}
	refuse := h.env.policy.Secure(u)
	if !h.env.policy.Trusts(u) {
		refuse = fmt.Errorf("%w: %q (trusted: the WithBaseURL host and WithAuthHosts)", ErrUntrustedHost, u.Host)
	}
	if refuse == nil {
		return false, nil
	}
	if p.Token != "" || h.env.authorized || h.env.current().Get("Authorization") != "" {
		return false, fmt.Errorf("pigeon: SocketInit: %w", refuse)
	}
	return true, nil // a ghost without a token: it never sends one here
}

func (h *socketHolder) init(ctx context.Context, p SocketConnectParams) error {
	if p.URL == "" {
		return errors.New("pigeon: SocketInit: empty URL")
	}
	strip, err := h.bearerRule(p)
	if err != nil {
		return err
	}
	cfg := actors.SocketConfig{
		URL:           p.URL,
		Lazy:          h.env.cfg.lazy,
		FailFast:      !h.env.cfg.lazy,
		Linger:        h.env.cfg.linger,
		JoinID:        p.JoinID,
		ListenerQueue: h.env.cfg.queue,
		Overflow:      h.env.cfg.policy,
		BufferCount:   h.env.cfg.bufCount,
		BufferBytes:   h.env.cfg.bufBytes,
		EmitRetries:   h.env.cfg.emitRetries,
		AckTimeout:    h.env.cfg.ackTimeout,
		Logger:        h.env.logger,
		Observer:      h.env.cfg.observer,
		Interceptors:  h.env.cfg.interceptors,
		Headers:       actors.HeaderSource(h.headersFor(p.Token, strip)),
		Status:        h.status,
		Dial:          h.env.dial,
		PingInterval:  h.env.cfg.pingInterval,
		PingGrace:     h.env.cfg.pingGrace,
		Clock:         h.env.cfg.clock,
	}
	if r := h.env.cfg.reconnect; r != nil {
		cfg.MaxReconnectAttempts, cfg.BackoffBase, cfg.BackoffMax = r.MaxAttempts, r.MinDelay, r.MaxDelay
	}
	if h.env.store != nil && p.Token == "" && !strip {
		// The socket follows the account's tokens itself (a fixed Token
		// stays fixed).
		cfg.AuthStore, cfg.UID = h.env.store, h.env.uid
	}
	sio := strings.Contains(p.URL, "/socket.io")
	if sio {
		opts := h.env.cfg.sioOpts
		if p.Namespace != "" {
			opts = append(opts[:len(opts):len(opts)], wire.WithNamespace(p.Namespace))
		}
		cfg.Codec = wire.SocketIO(opts...)
	} else if p.Namespace != "" {
		return fmt.Errorf("pigeon: SocketInit: Namespace %q: namespaces are socket.io's, and %q speaks pigeon.v1", p.Namespace, p.URL)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pigeon: SocketInit: %w", err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	old := h.run
	if h.sys == nil {
		h.sys = h.env.system()
	}
	cfg.Listeners, h.early = h.early, nil
	run := &socketRun{}
	run.life, run.end = context.WithCancel(context.Background())
	run.pid = h.sys.Root.Copy().WithGuardian(actor.NewOneForOneStrategy(3, time.Minute, actor.DefaultDecider)).
		SpawnPrefix(actors.NewSocketConnProps(cfg), "pigeon-socket")
	h.run, h.static, h.strip, h.disconnected, h.sio = run, p.Token, strip, false, sio
	sys := h.sys
	h.mu.Unlock()
	if old != nil {
		h.stop(old, nil)
	}
	if cfg.Lazy {
		return nil
	}
	if _, err := socketAsk[*messages.Connected](ctx, sys, run, &messages.Connect{}); err != nil {
		err = h.initFailed(ctx, sys, run, err)
		h.mu.Lock()
		if h.run == run {
			h.run = nil
		}
		if run.cause != nil {
			// Ended on purpose while connecting (a LogOut): that is the
			// cause, not the ErrClosed the stopped actor answered.
			err = fmt.Errorf("pigeon: SocketInit: %w", run.cause)
		}
		h.mu.Unlock()
		h.stop(run, err)
		return err
	}
	return nil
}

// initFailed explains a failed eager SocketInit: the actor's answer, or,
// when ctx ended first, what the connection was still waiting for and the
// last attempt's error.
func (h *socketHolder) initFailed(ctx context.Context, sys *actor.ActorSystem, run *socketRun, err error) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("pigeon: SocketInit: %w", h.gone(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, serr := socketAsk[*messages.State](sctx, sys, run, &messages.GetState{})
	if serr != nil {
		return fmt.Errorf("pigeon: SocketInit: %w (socket state unknown: %v)", err, serr)
	}
	msg := "socket " + st.State.String()
	if st.Step != "" {
		msg += ", " + st.Step
	}
	if st.LastErr != nil {
		return fmt.Errorf("pigeon: SocketInit: %w (%s; last attempt: %w)", err, msg, st.LastErr)
	}
	return fmt.Errorf("pigeon: SocketInit: %w (%s)", err, msg)
}

func (h *socketHolder) current() (*actor.ActorSystem, *socketRun, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, ErrClosed
	}
	if h.run == nil {
		return nil, nil, ErrSocketNotInitialized
	}
	return h.sys, h.run, nil
}

func (h *socketHolder) listen(ctx context.Context, event string) (*Subscription, error) {
	h.mu.Lock()
	if !h.closed && h.run == nil && !h.disconnected {
		// Before SocketInit: the socket adopts the subscription before it
		// dials, so it sees what the server sends on connect.
		l := actors.NewSocketListener(event, h.env.cfg.queue)
		live := h.early[:0]
		for _, e := range h.early {
			if e.Err() == nil {
				live = append(live, e)
			}
		}
		h.early = append(live, l)
		h.mu.Unlock()
		return &Subscription{C: l.C, l: l}, nil
	}
	h.mu.Unlock()
	sys, run, err := h.current()
	if err != nil {
		return nil, err
	}
	l, err := socketAsk[*actors.SocketListener](ctx, sys, run, &messages.Listen{Event: event})
	if err != nil {
		return nil, h.gone(err)
	}
	return &Subscription{C: l.C, l: l}, nil
}

func (h *socketHolder) emit(ctx context.Context, event string, data any, ack bool) (json.RawMessage, error) {
	sys, run, err := h.current()
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	sio := h.sio
	h.mu.Unlock()
	var raw json.RawMessage
	var args []SocketArg
	if data != nil {
		switch d := data.(type) {
		case json.RawMessage:
			raw = d
		case SocketArgs:
			if args, err = wire.ArgsOf(d...); err != nil {
				return nil, fmt.Errorf("pigeon: Emit: %w", err)
			}
		case []byte:
			if sio { // a binary attachment
				args = []SocketArg{{Binary: append([]byte{}, d...)}}
				break
			}
			if raw, err = json.Marshal(d); err != nil {
				return nil, fmt.Errorf("pigeon: Emit: encoding data: %w", err)
			}
		default:
			if raw, err = json.Marshal(data); err != nil {
				return nil, fmt.Errorf("pigeon: Emit: encoding data: %w", err)
			}
		}
	}
	r, err := socketAsk[*messages.EmitResult](ctx, sys, run, &messages.Emit{Event: event, Data: raw, Args: args, WantAck: ack})
	if err != nil {
		return nil, h.gone(err)
	}
	return r.Ack, nil
}

// gone maps "the actor is not there" to the facade's errors.
func (h *socketHolder) gone(err error) error {
	if errors.Is(err, actors.ErrNoReply) {
		if _, _, cerr := h.current(); cerr != nil {
			return cerr
		}
	}
	return err
}

// headersChanged pushes the current headers to a live socket (no waiting:
// it may run on an actor's mailbox).
func (h *socketHolder) headersChanged() { h.push(false) }

// tokenChanged pushes the headers after a ghost's bearer changed
// (SetAuthToken); a socket opened with its own fixed Token is left alone.
// An authorized client's socket follows the AuthStore itself
// (SocketConfig.AuthStore) and is never pushed to.
func (h *socketHolder) tokenChanged() { h.push(true) }

func (h *socketHolder) push(tokenOnly bool) {
	h.mu.Lock()
	sys, run, static, strip := h.sys, h.run, h.static, h.strip
	h.mu.Unlock()
	if run == nil || (tokenOnly && static != "") {
		return
	}
	sys.Root.Send(run.pid, &messages.UpdateHeaders{Headers: withBearer(h.env.current(), static, strip)})
}

// stop disconnects run's actor (its subscriptions and requests end with
// cause; nil means ErrClosed), waits until it has stopped and fails any
// request still addressed to it.
func (h *socketHolder) stop(run *socketRun, cause error) {
	h.mu.Lock()
	sys := h.sys
	h.mu.Unlock()
	if run.life.Err() != nil {
		return // stopped already
	}
	defer run.end()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// socketAsk: a run another stop is ending (a LogOut racing a failed
	// SocketInit) answers when that stop is done, not after 30s.
	_, _ = socketAsk[*messages.Disconnected](ctx, sys, run, &messages.Disconnect{Err: cause})
	_ = actors.StopAndWait(ctx, sys, run.pid)
}

func (h *socketHolder) disconnect() error { return h.disconnectFor(nil) }

// disconnectFor is disconnect on behalf of cause (ErrLoggedOut): a
// SocketInit waiting for the socket returns cause. Subscriptions still end
// with ErrClosed, as DisconnectSocket's do.
func (h *socketHolder) disconnectFor(cause error) error {
	h.mu.Lock()
	run, early := h.run, h.early
	if run != nil && cause != nil {
		run.cause = cause
	}
	h.run, h.early, h.disconnected = nil, nil, true
	h.mu.Unlock()
	for _, l := range early {
		_ = l.Close()
	}
	if run != nil {
		h.stop(run, nil)
	}
	return nil
}

func (h *socketHolder) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	_ = h.disconnect()
	h.status.Close() // after the socket's final SocketClosed
}

// subscribeState returns the state stream of the holder's sockets.
func (h *socketHolder) subscribeState(ctx context.Context) (<-chan SocketStatus, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return h.status.Subscribe(ctx, 16).C, nil
}

func (p *AuthorizedPigeon) socketEnv() socketEnv {
	return p.socketEnvFor("", p.defaultHeaders, p.tokens)
}

// socketEnvFor is the socket of account uid ("" = the current one), with
// defaults for its default headers and tokens for its token (bound to uid).
func (p *AuthorizedPigeon) socketEnvFor(uid string, defaults func() http.Header, tokens *actors.TokenClient) socketEnv {
	snap := p.view.Current
	if uid != "" {
		snap = func() *messages.TokenSnapshot { return p.view.Account(uid) }
	}
	return socketEnv{
		dial: socketDial(p.cfg), store: p.storePID,
		system: func() *actor.ActorSystem { return p.system }, logger: p.log, cfg: p.cfg.socket,
		policy: socketPolicy(p.cfg), authorized: true, uid: uid,
		current: func() http.Header {
			hdr := defaults().Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			if s := snap(); s != nil {
				hdr.Set("Authorization", "Bearer "+string(s.AccessToken))
			}
			return hdr
		},
		headers: func(ctx context.Context, rejected http.Header) (http.Header, error) {
			hdr := defaults().Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			s, err := tokens.Token(ctx)
			if err != nil {
				return nil, err
			}
			if s != nil && rejected != nil && rejected.Get("Authorization") == "Bearer "+string(s.AccessToken) {
				// The server refused the token we hold: refresh it (one
				// flight shared with HTTP callers).
				if s, err = tokens.Unauthorized(ctx, s); err != nil {
					return nil, err
				}
			}
			if s == nil {
				return nil, ErrNoAuth
			}
			hdr.Set("Authorization", "Bearer "+string(s.AccessToken))
			return hdr, nil
		},
	}
}

// SocketInit opens the client's socket (eager) or records where to open it
// (WithLazySocket), replacing any previous one. Token "" uses the current
// account's token and follows its refreshes.
//
// The bearer follows the HTTP rule: the URL's host must be trusted (the
// WithBaseURL host, WithAuthHosts), else ErrUntrustedHost; plain ws:// or
// http:// to a host that is not loopback needs WithInsecureHTTP, else
// ErrInsecureBearer. Nothing is dialed then.
//
// Eager, it returns once the connection is up and JoinID joined (the
// server acknowledged the join; socket.io: the join event was sent), or
// with why not: the dial error, the handshake's HTTP status, the server's
// rejection with its code and message, a *PanicError; when ctx ends first,
// ctx's error with what was still pending and the last attempt's error. A
// failed SocketInit leaves no socket behind (nothing keeps dialing; Emit
// returns ErrSocketNotInitialized) and ends the subscriptions made before
// it with its error.
func (p *AuthorizedPigeon) SocketInit(ctx context.Context, sp SocketConnectParams) error {
	if p.closing.Load() {
		return ErrClosed
	}
	return p.sock.init(ctx, sp)
}

// Listen receives every event named event on the socket ("" = every
// event); nothing the server sends after Listen returns is lost. Called
// before SocketInit, the subscription is handed to the socket SocketInit
// opens before it dials, so it sees the events sent on connect. After
// DisconnectSocket (until the next SocketInit) it fails with
// ErrSocketNotInitialized.
func (p *AuthorizedPigeon) Listen(ctx context.Context, event string) (*Subscription, error) {
	return p.sock.listen(ctx, event)
}

// Emit sends event with data (JSON) to the JoinID channel (pigeon.v1) or
// as a socket.io event. On socket.io a []byte is sent as a binary
// attachment and SocketArgs as several arguments. While disconnected it is buffered within the
// WithEmitBuffer bounds; beyond them it fails at once with ErrBufferFull.
//
// On pigeon.v1 an emit is delivered exactly once across reconnects: it
// carries an emitId the server dedupes and stays buffered until the server
// acks it, written again after every rejoin. On socket.io it is written
// once, or at least once with WithEmitRetries. nil means the emit is in
// pigeon's hands; one pigeon then gives up on (refused by the server,
// retries spent, the socket ended first) is counted in
// SocketStatus.EmitsDropped and logged, never lost silently.
func (p *AuthorizedPigeon) Emit(ctx context.Context, event string, data any) error {
	_, err := p.sock.emit(ctx, event, data, false)
	return err
}

// EmitWithAck is Emit that waits for the server's acknowledgement and
// returns its payload.
func (p *AuthorizedPigeon) EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error) {
	return p.sock.emit(ctx, event, data, true)
}

// SubscribeSocketState returns the socket's state stream: the current
// status first, then every transition, across SocketInit,
// DisconnectSocket and the next SocketInit (SocketIdle before the first).
// The channel holds 16 entries; a reader that falls behind loses the
// oldest, so it always ends on the newest status (the final SocketClosed
// is never lost) and never blocks the socket. It is closed when ctx ends
// or the client closes.
func (p *AuthorizedPigeon) SubscribeSocketState(ctx context.Context) (<-chan SocketStatus, error) {
	if p.closing.Load() {
		return nil, ErrClosed
	}
	return p.sock.subscribeState(ctx)
}

// DisconnectSocket closes the socket (close 1000): every subscription ends
// with ErrClosed and pending acks fail with ErrClosed. The auth store and
// HTTP keep working. Idempotent.
func (p *AuthorizedPigeon) DisconnectSocket() error { return p.sock.disconnect() }
