package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
)

// SocketConnectParams says where the socket connects. Token "" means the
// stored (current) token, kept fresh: a refresh reaches the live connection
// as an `update`. A URL whose path contains "/socket.io" speaks socket.io
// v4; any other URL pigeon.v1. JoinID, when set, is joined after the
// handshake (pigeon.v1 `join`; socket.io: the join event, "join" unless
// WithSocketIOJoinEvent).
type SocketConnectParams struct {
	Token  string
	URL    string
	JoinID string
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
	lazy         bool
	linger       time.Duration
	queue        int
	policy       OverflowPolicy
	bufCount     int
	bufBytes     int
	ackTimeout   time.Duration
	interceptors []SocketInterceptor
	sioOpts      []wire.SocketIOOption
}

func defaultSocketConfig() socketConfig { return socketConfig{} }

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
// disconnected; an Emit beyond them fails at once with ErrBufferFull. Zero
// value: 64 emits, 1 MiB.
func WithEmitBuffer(count, bytes int) Option {
	return optionFunc(func(c *config) error {
		if count <= 0 || bytes <= 0 {
			return errors.New("pigeon: WithEmitBuffer: bounds must be positive")
		}
		c.socket.bufCount, c.socket.bufBytes = count, bytes
		return nil
	})
}

// WithAckTimeout bounds every socket request that waits for the server
// (init, join, update, EmitWithAck). Zero value: 10s.
func WithAckTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return errors.New("pigeon: WithAckTimeout: not positive")
		}
		c.socket.ackTimeout = d
		return nil
	})
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

// socketEnv is what a client gives its socket.
type socketEnv struct {
	// system returns the actor system sockets are spawned in (created on
	// first use by a ghost client).
	system func() *actor.ActorSystem
	logger *zap.Logger
	cfg    socketConfig
	// headers returns the handshake headers; rejected non-nil asks for
	// fresh ones (the server refused those).
	headers func(ctx context.Context, rejected http.Header) (http.Header, error)
	// current returns the headers as they are now, without waiting (for
	// live updates).
	current func() http.Header
}

// socketHolder owns a client's one socket connection: the SocketConn
// actor's PID, replaced by SocketInit and removed by DisconnectSocket.
type socketHolder struct {
	env    socketEnv
	mu     sync.Mutex
	sys    *actor.ActorSystem // set with the first pid
	pid    *actor.PID
	static string // SocketConnectParams.Token, "" = follow the client
	closed bool
}

func newSocketHolder(env socketEnv) *socketHolder { return &socketHolder{env: env} }

func (h *socketHolder) headersFor(static string) func(context.Context, http.Header) (http.Header, error) {
	if static == "" {
		return h.env.headers
	}
	return func(ctx context.Context, _ http.Header) (http.Header, error) {
		hdr := h.env.current()
		hdr.Set("Authorization", "Bearer "+static)
		return hdr, nil
	}
}

func (h *socketHolder) init(ctx context.Context, p SocketConnectParams) error {
	if p.URL == "" {
		return errors.New("pigeon: SocketInit: empty URL")
	}
	cfg := actors.SocketConfig{
		URL:           p.URL,
		Lazy:          h.env.cfg.lazy,
		Linger:        h.env.cfg.linger,
		JoinID:        p.JoinID,
		ListenerQueue: h.env.cfg.queue,
		Overflow:      h.env.cfg.policy,
		BufferCount:   h.env.cfg.bufCount,
		BufferBytes:   h.env.cfg.bufBytes,
		AckTimeout:    h.env.cfg.ackTimeout,
		Logger:        h.env.logger,
		Interceptors:  h.env.cfg.interceptors,
		Headers:       actors.HeaderSource(h.headersFor(p.Token)),
	}
	if strings.Contains(p.URL, "/socket.io") {
		cfg.Codec = wire.SocketIO(h.env.cfg.sioOpts...)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pigeon: SocketInit: %w", err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	old := h.pid
	if h.sys == nil {
		h.sys = h.env.system()
	}
	h.pid = h.sys.Root.Copy().WithGuardian(actor.NewOneForOneStrategy(3, time.Minute, actor.DefaultDecider)).
		SpawnPrefix(actors.NewSocketConnProps(cfg), "pigeon-socket")
	h.static = p.Token
	pid := h.pid
	h.mu.Unlock()
	if old != nil {
		h.stop(old)
	}
	if cfg.Lazy {
		return nil
	}
	_, err := actors.AskAs[*messages.Connected](ctx, h.sys, pid, &messages.Connect{})
	return err
}

func (h *socketHolder) current() (*actor.ActorSystem, *actor.PID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, ErrClosed
	}
	if h.pid == nil {
		return nil, nil, ErrSocketNotInitialized
	}
	return h.sys, h.pid, nil
}

func (h *socketHolder) listen(ctx context.Context, event string) (*Subscription, error) {
	sys, pid, err := h.current()
	if err != nil {
		return nil, err
	}
	l, err := actors.AskAs[*actors.SocketListener](ctx, sys, pid, &messages.Listen{Event: event})
	if err != nil {
		return nil, h.gone(err)
	}
	return &Subscription{C: l.C, l: l}, nil
}

func (h *socketHolder) emit(ctx context.Context, event string, data any, ack bool) (json.RawMessage, error) {
	sys, pid, err := h.current()
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if data != nil {
		switch d := data.(type) {
		case json.RawMessage:
			raw = d
		default:
			if raw, err = json.Marshal(data); err != nil {
				return nil, fmt.Errorf("pigeon: Emit: encoding data: %w", err)
			}
		}
	}
	r, err := actors.AskAs[*messages.EmitResult](ctx, sys, pid, &messages.Emit{Event: event, Data: raw, WantAck: ack})
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

// tokenChanged pushes the headers after the client's token changed (save,
// switch, refresh); a socket opened with its own fixed Token is left alone.
func (h *socketHolder) tokenChanged() { h.push(true) }

func (h *socketHolder) push(tokenOnly bool) {
	h.mu.Lock()
	sys, pid, static := h.sys, h.pid, h.static
	h.mu.Unlock()
	if pid == nil || (tokenOnly && static != "") {
		return
	}
	hdr := h.env.current()
	if static != "" {
		hdr.Set("Authorization", "Bearer "+static)
	}
	sys.Root.Send(pid, &messages.UpdateHeaders{Headers: hdr})
}

func (h *socketHolder) stop(pid *actor.PID) {
	h.mu.Lock()
	sys := h.sys
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = actors.Ask(ctx, sys, pid, &messages.Disconnect{})
	_ = actors.StopAndWait(ctx, sys, pid)
}

func (h *socketHolder) disconnect() error {
	h.mu.Lock()
	pid := h.pid
	h.pid = nil
	h.mu.Unlock()
	if pid != nil {
		h.stop(pid)
	}
	return nil
}

func (h *socketHolder) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	_ = h.disconnect()
}

func (p *AuthorizedPigeon) socketEnv() socketEnv {
	return socketEnv{
		system: func() *actor.ActorSystem { return p.system }, logger: p.log, cfg: p.cfg.socket,
		current: func() http.Header {
			hdr := p.defaultHeaders().Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			if s := p.view.Current(); s != nil {
				hdr.Set("Authorization", "Bearer "+string(s.AccessToken))
			}
			return hdr
		},
		headers: func(ctx context.Context, rejected http.Header) (http.Header, error) {
			hdr := p.defaultHeaders().Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			s, err := p.tokens.Token(ctx)
			if err != nil {
				return nil, err
			}
			if s != nil && rejected != nil && rejected.Get("Authorization") == "Bearer "+string(s.AccessToken) {
				// The server refused the token we hold: refresh it (one
				// flight shared with HTTP callers).
				if s, err = p.tokens.Unauthorized(ctx, s); err != nil {
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
func (p *AuthorizedPigeon) SocketInit(ctx context.Context, sp SocketConnectParams) error {
	if p.closing.Load() {
		return ErrClosed
	}
	return p.sock.init(ctx, sp)
}

// Listen receives every event named event on the socket ("" = every
// event). ErrSocketNotInitialized before SocketInit.
func (p *AuthorizedPigeon) Listen(ctx context.Context, event string) (*Subscription, error) {
	return p.sock.listen(ctx, event)
}

// Emit sends event with data (JSON) to the JoinID channel (pigeon.v1) or
// as a socket.io event. While disconnected it is buffered within the
// WithEmitBuffer bounds; beyond them it fails at once with ErrBufferFull.
func (p *AuthorizedPigeon) Emit(ctx context.Context, event string, data any) error {
	_, err := p.sock.emit(ctx, event, data, false)
	return err
}

// EmitWithAck is Emit that waits for the server's acknowledgement and
// returns its payload.
func (p *AuthorizedPigeon) EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error) {
	return p.sock.emit(ctx, event, data, true)
}

// DisconnectSocket closes the socket (close 1000): every subscription ends
// with ErrClosed and pending acks fail with ErrClosed. The auth store and
// HTTP keep working. Idempotent.
func (p *AuthorizedPigeon) DisconnectSocket() error { return p.sock.disconnect() }
