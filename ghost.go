package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// GhostPigeon is the client for anonymous users: the same HTTP and socket
// API as AuthorizedPigeon, with an optional bearer (SetAuthToken), no token
// store, no refresh and no auth events; a 401 is returned as is. All
// methods are safe for concurrent use.
type GhostPigeon struct {
	cfg        *config
	http       *httpCore
	base       http.RoundTripper
	ownBase    bool
	token      atomic.Pointer[messages.TokenSnapshot]
	headers    atomic.Pointer[http.Header]
	life       context.Context
	lifeCancel context.CancelCauseFunc
	closeOnce  sync.Once
	sock       *socketHolder
	sysMu      sync.Mutex
	system     *actor.ActorSystem // WithActorSystem's, or created with the first socket
	ownSystem  bool
}

// actorSystem returns the system the ghost's socket actors run in: the one
// given with WithActorSystem, else one created on first use (an HTTP-only
// ghost never pays for an actor system).
func (g *GhostPigeon) actorSystem() *actor.ActorSystem {
	g.sysMu.Lock()
	defer g.sysMu.Unlock()
	if g.system == nil {
		if g.cfg.system != nil {
			g.system = g.cfg.system
		} else {
			g.system = actors.NewSystem(g.cfg.logger, systemOptions...)
			g.ownSystem = true
		}
	}
	return g.system
}

var _ AppPigeon = (*GhostPigeon)(nil)

// NewGhost builds an anonymous client. Storage and refresh options are
// ignored.
func NewGhost(opts ...Option) (*GhostPigeon, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	g := &GhostPigeon{cfg: cfg}
	g.life, g.lifeCancel = context.WithCancelCause(context.Background())
	g.headers.Store(&cfg.headers)
	g.base, g.ownBase = baseTransport(cfg)
	_, g.http = buildHTTP(cfg, g.life, withMiddleware(g.base, cfg.middleware), ghostTokens{g},
		func(*http.Response) bool { return false }, func() http.Header { return *g.headers.Load() })
	g.sock = newSocketHolder(socketEnv{
		dial:   socketDial(cfg), // no store: SetAuthToken pushes the bearer
		system: g.actorSystem, logger: cfg.logger, cfg: cfg.socket, policy: socketPolicy(cfg),
		headers: func(ctx context.Context, _ http.Header) (http.Header, error) { return g.socketHeaders(ctx) },
		current: func() http.Header { h, _ := g.socketHeaders(context.Background()); return h },
	})
	return g, nil
}

// SetAuthToken sets the optional bearer token ("" removes it). New
// requests use it at once; a live socket receives it as an `update`.
func (g *GhostPigeon) SetAuthToken(token string) {
	if token == "" {
		g.token.Store(nil)
	} else {
		s := messages.TokenSnapshot{AccessToken: Secret(token)}.WithAuthorization()
		g.token.Store(&s)
	}
	g.sock.tokenChanged()
}

// UpdateHeaders changes the default headers like
// AuthorizedPigeon.UpdateHeaders.
func (g *GhostPigeon) UpdateHeaders(h map[string]string) {
	updateHeaders(&g.headers, h)
	g.sock.headersChanged()
}

func (g *GhostPigeon) socketHeaders(context.Context) (http.Header, error) {
	h := (*g.headers.Load()).Clone()
	if h == nil {
		h = http.Header{}
	}
	if t := g.token.Load(); t != nil {
		h.Set("Authorization", "Bearer "+string(t.AccessToken))
	}
	return h, nil
}

// HTTPClient returns an *http.Client with the ghost's bearer, default
// headers and middleware.
func (g *GhostPigeon) HTTPClient() *http.Client { return g.http.client }

// Get sends a GET to path.
func (g *GhostPigeon) Get(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return g.http.do(ctx, http.MethodGet, path, nil, opts)
}

// Post sends body like AuthorizedPigeon.Post.
func (g *GhostPigeon) Post(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return g.http.do(ctx, http.MethodPost, path, body, opts)
}

// Put sends body like Post.
func (g *GhostPigeon) Put(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return g.http.do(ctx, http.MethodPut, path, body, opts)
}

// Patch sends body like Post.
func (g *GhostPigeon) Patch(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return g.http.do(ctx, http.MethodPatch, path, body, opts)
}

// Delete sends a DELETE.
func (g *GhostPigeon) Delete(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return g.http.do(ctx, http.MethodDelete, path, nil, opts)
}

// SocketInit opens the ghost's socket like AuthorizedPigeon.SocketInit;
// Token "" uses the SetAuthToken bearer (if any).
func (g *GhostPigeon) SocketInit(ctx context.Context, sp SocketConnectParams) error {
	if g.life.Err() != nil {
		return ErrClosed
	}
	return g.sock.init(ctx, sp)
}

// Listen receives every event named event on the socket, like
// AuthorizedPigeon.Listen (allowed before SocketInit).
func (g *GhostPigeon) Listen(ctx context.Context, event string) (*Subscription, error) {
	return g.sock.listen(ctx, event)
}

// Emit sends event with data on the socket.
func (g *GhostPigeon) Emit(ctx context.Context, event string, data any) error {
	_, err := g.sock.emit(ctx, event, data, false)
	return err
}

// EmitWithAck is Emit that waits for the server's acknowledgement.
func (g *GhostPigeon) EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error) {
	return g.sock.emit(ctx, event, data, true)
}

// SubscribeSocketState returns the socket's state stream like
// AuthorizedPigeon.SubscribeSocketState.
func (g *GhostPigeon) SubscribeSocketState(ctx context.Context) (<-chan SocketStatus, error) {
	if g.life.Err() != nil {
		return nil, ErrClosed
	}
	return g.sock.subscribeState(ctx)
}

// DisconnectSocket closes the socket. Idempotent.
func (g *GhostPigeon) DisconnectSocket() error { return g.sock.disconnect() }

// Close disposes the client as AppPigeon.Close says.
func (g *GhostPigeon) Close() error {
	err := ErrClosed
	g.closeOnce.Do(func() {
		g.lifeCancel(ErrClosed)
		g.sock.close()
		g.sysMu.Lock()
		if g.ownSystem {
			g.system.Shutdown()
		}
		g.sysMu.Unlock()
		if g.ownBase {
			if t, ok := g.base.(interface{ CloseIdleConnections() }); ok {
				t.CloseIdleConnections()
			}
		}
		err = nil
	})
	return err
}

// ghostTokens serves the optional bearer to the transport.
type ghostTokens struct{ g *GhostPigeon }

func (t ghostTokens) Token(context.Context) (*messages.TokenSnapshot, error) {
	return t.g.token.Load(), nil
}
func (t ghostTokens) Unauthorized(context.Context, *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	return nil, errors.New("pigeon: ghost clients do not refresh")
}
