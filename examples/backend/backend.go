package backend

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// Sentinel errors returned by the Backend's Go helpers.
var (
	// ErrClosed: the Backend was closed.
	ErrClosed = errors.New("pigeon/examples/backend: closed")
	// ErrEmailTaken: CreateUser was given an email that is already registered.
	ErrEmailTaken = errors.New("pigeon/examples/backend: email already registered")
	// ErrInvalidInput: a helper was given an empty or malformed argument.
	ErrInvalidInput = errors.New("pigeon/examples/backend: invalid input")
	// ErrUnknownRoom: a helper named a room that does not exist yet.
	ErrUnknownRoom = errors.New("pigeon/examples/backend: unknown room")
)

// Backend is the example backend: an http.Handler serving the HTTP API and
// the pigeon.v1 websocket at /ws (see the package documentation). All of its
// methods are safe for concurrent use. Close it when done: it owns the
// goroutines of every websocket connection.
type Backend struct {
	cfg    config
	routes map[string]route
	stats  *counters
	jwtKey []byte

	// closeCtx is cancelled by Close; refresh-hook requests and every
	// connection derive from it.
	closeCtx  context.Context
	closeNow  context.CancelFunc
	closeOnce sync.Once

	auth authStore

	upgrader websocket.Upgrader

	connMu sync.Mutex
	closed bool
	conns  map[*wsConn]struct{}
	wg     sync.WaitGroup // every websocket handler and writer goroutine

	roomMu sync.Mutex
	rooms  map[string]*room

	emitIDs *emitDedupe
}

var _ http.Handler = (*Backend)(nil)

type route struct {
	path    string
	methods map[string]http.HandlerFunc
	allow   string
}

// New returns a Backend configured by opts. It starts no goroutine until a
// websocket connects.
func New(opts ...Option) *Backend {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.idleGrace == 0 {
		cfg.idleGrace = cfg.pingInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cfg:      cfg,
		stats:    newCounters(),
		jwtKey:   randomBytes(32),
		closeCtx: ctx,
		closeNow: cancel,
		conns:    make(map[*wsConn]struct{}),
		rooms:    make(map[string]*room),
	}
	b.auth.init()
	b.emitIDs = newEmitDedupe(cfg.emitWindow)
	b.upgrader = websocket.Upgrader{
		Subprotocols: []string{Subprotocol},
		// Example backend for non-browser clients: any origin is accepted.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	b.routes = make(map[string]route)
	b.handle("/auth/signup", http.MethodPost, b.handleSignup)
	b.handle("/auth/login", http.MethodPost, b.handleLogin)
	b.handle("/auth/refresh", http.MethodPost, b.handleRefresh)
	b.handle("/auth/logout", http.MethodPost, b.handleLogout)
	b.handle("/me", http.MethodGet, b.handleMe)
	b.handle("/echo", http.MethodGet, b.handleEcho(true))
	b.handle("/echo", http.MethodPost, b.handleEcho(true))
	b.handle("/public/echo", http.MethodGet, b.handleEcho(false))
	b.handle("/public/echo", http.MethodPost, b.handleEcho(false))
	b.handle("/chat/ghost/register", http.MethodPost, b.handleGhostRegister)
	b.handle("/chat/ghost/login", http.MethodPost, b.handleGhostLogin)
	b.handle("/chat/ghost/messages", http.MethodPost, b.handlePostMessage)
	b.handle("/chat/ghost/messages", http.MethodGet, b.handleGetMessages)
	b.handle("/ws", http.MethodGet, b.handleWS)
	return b
}

func (b *Backend) handle(path, method string, h http.HandlerFunc) {
	rt, ok := b.routes[path]
	if !ok {
		rt = route{path: path, methods: make(map[string]http.HandlerFunc)}
	}
	rt.methods[method] = h
	if rt.allow == "" {
		rt.allow = method
	} else {
		rt.allow += ", " + method
	}
	b.routes[path] = rt
}

// ServeHTTP serves the HTTP API and the websocket endpoint. Safe for
// concurrent use.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := b.routes[r.URL.Path]
	if !ok {
		b.stats.request("(unmatched)")
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	b.stats.request(rt.path)
	h, ok := rt.methods[r.Method]
	if !ok {
		w.Header().Set("Allow", rt.allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed; allowed: "+rt.allow)
		return
	}
	h(w, r)
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (b *Backend) Stats() Stats { return b.stats.snapshot() }

// Close closes every websocket connection with 1001 (going away), refuses
// new ones with 503, cancels the context of requests held by the refresh
// hook, and waits until every goroutine the Backend started has returned.
// HTTP endpoints other than /ws keep working. Idempotent and safe for
// concurrent use.
func (b *Backend) Close() {
	b.closeOnce.Do(func() {
		b.closeNow()
		b.connMu.Lock()
		b.closed = true
		conns := make([]*wsConn, 0, len(b.conns))
		for c := range b.conns {
			conns = append(conns, c)
		}
		b.connMu.Unlock()
		for _, c := range conns {
			c.closeWith(websocket.CloseGoingAway, "server shutting down")
		}
	})
	b.wg.Wait()
}

// CloseAllSockets closes every open websocket connection with the given
// close code and reason (for example 4004 or 1001 to simulate a server
// restart; combine with RestartRooms to also lose the rooms' state) and
// returns how many it closed. It does not wait for the connections to finish
// closing. New connections are still accepted. Safe for concurrent use.
func (b *Backend) CloseAllSockets(code int, reason string) int {
	b.connMu.Lock()
	conns := make([]*wsConn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.connMu.Unlock()
	n := 0
	for _, c := range conns {
		if c.closeWith(code, reason) {
			n++
		}
	}
	return n
}

// envelope of every HTTP answer.
type dataBody struct {
	Data any `json:"data"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(dataBody{Data: data})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: apiError{Code: code, Message: msg}})
}

// maxBody bounds HTTP request bodies.
const maxBody = 1 << 20

// decodeBody decodes a JSON object body into v; on failure it writes a 400
// and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBodyThen(w, r, v, nil)
}

// decodeBodyThen is decodeBody calling onErr (if not nil) before writing
// the 400, so that counters are updated before the client sees the answer.
func decodeBodyThen(w http.ResponseWriter, r *http.Request, v any, onErr func()) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		if onErr != nil {
			onErr()
		}
		writeError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object: "+err.Error())
		return false
	}
	return true
}

// bearer returns the token of an "Authorization: Bearer X" value, or "".
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return b
}

// randomString returns n random bytes, base64url-encoded without padding.
func randomString(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}
