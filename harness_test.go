package pigeon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

// newFakeClock returns the clock tests move by hand, shared by the backend
// and pigeon (wstest's fake clock: Now and Advance).
func newFakeClock() *wstest.Clock {
	return wstest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// env is one test's world: the example backend behind a real httptest
// server, optionally wrapped, and an authorized client pointed at it.
type env struct {
	t     *testing.T
	be    *backend.Backend
	srv   *httptest.Server
	p     *pigeon.AuthorizedPigeon
	clock *wstest.Clock
	// opts and refresher rebuild the client (reopen).
	opts      []pigeon.Option
	refresher pigeon.RefreshTokenManager
	// seen records the bearer of every request to /echo, in order.
	mu   sync.Mutex
	seen []string
}

type envConfig struct {
	backend []backend.Option
	pigeon  []pigeon.Option
	// wrap may intercept requests before the backend sees them.
	wrap func(next http.Handler) http.Handler
	// wrapEnv is wrap with the env (its backend and clock set; not yet
	// its client), applied outside wrap.
	wrapEnv   func(e *env, next http.Handler) http.Handler
	refresher pigeon.RefreshTokenManager
	// refresherFor builds the refresher once the server runs (it wins
	// over refresher).
	refresherFor func(e *env) pigeon.RefreshTokenManager
	noClock      bool
	// storeDir, when set, keeps tokens in an encrypted badger store there
	// (with key, or a fixed test key) instead of in memory.
	storeDir string
	key      []byte
	// noBaseURL leaves WithBaseURL out: requests use absolute URLs.
	noBaseURL bool
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t}
	if !cfg.noClock {
		e.clock = newFakeClock()
		cfg.backend = append(cfg.backend, backend.WithClock(e.clock.Now))
		// The fake clock decides the time; waits (retries, sockets) pass
		// in real time.
		cfg.pigeon = append(cfg.pigeon, pigeon.WithClock(clock.NowFunc(e.clock.Now)))
	}
	e.be = backend.New(cfg.backend...)
	var h http.Handler = e.be
	if cfg.wrap != nil {
		h = cfg.wrap(h)
	}
	if cfg.wrapEnv != nil {
		h = cfg.wrapEnv(e, h)
	}
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth/refresh" && r.Body != nil {
			// Read the body now: net/http only notices a client that
			// went away (cancelling r.Context(), which hooks wait on)
			// once the body has been read.
			b, _ := io.ReadAll(r.Body)
			r = r.WithContext(r.Context())
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		if r.URL.Path == "/echo" {
			e.mu.Lock()
			e.seen = append(e.seen, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			e.mu.Unlock()
		}
		inner.ServeHTTP(w, r)
	})
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.be.Close() // ends refresh hooks still holding requests
		e.srv.Close()
	})
	refresher := cfg.refresher
	if cfg.refresherFor != nil {
		refresher = cfg.refresherFor(e)
	}
	if refresher == nil {
		refresher = pigeon.JSONRefresher{Path: "/auth/refresh"}
	}
	var opts []pigeon.Option
	if !cfg.noBaseURL {
		opts = append(opts, pigeon.WithBaseURL(e.srv.URL))
	}
	if cfg.storeDir != "" {
		key := cfg.key
		if key == nil {
			key = []byte("0123456789abcdef0123456789abcdef")
		}
		opts = append(opts, pigeon.WithStoreDir(cfg.storeDir), pigeon.WithEncryptionKey(key))
	} else {
		opts = append(opts, pigeon.WithInMemoryStore())
	}
	opts = append(opts, pigeon.WithLogger(zaptest.NewLogger(t)))
	e.opts = append(opts, cfg.pigeon...)
	e.refresher = refresher
	e.p = e.newClient()
	// Closes whichever client is current at the end (see reopen).
	t.Cleanup(func() { _ = e.p.Close() })
	return e
}

func (e *env) newClient() *pigeon.AuthorizedPigeon {
	e.t.Helper()
	p, err := pigeon.NewAuthorized(e.refresher, e.opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// reopen closes the client and opens a new one with the same options (on
// the same store directory).
func (e *env) reopen() {
	e.t.Helper()
	if err := e.p.Close(); err != nil {
		e.t.Fatalf("close before reopen: %v", err)
	}
	e.p = e.newClient()
}

// login creates a user on the backend and saves its tokens in the client.
func (e *env) login(email string) backend.Tokens {
	e.t.Helper()
	tok, err := e.be.CreateUser(email, "pw-"+email)
	if err != nil {
		e.t.Fatal(err)
	}
	e.save(tok)
	return tok
}

func (e *env) save(tok backend.Tokens) {
	e.t.Helper()
	err := e.p.SaveNewAuth(context.Background(), pigeon.SaveAuthParams{
		UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt,
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) refreshCalls() int64 { return e.be.Stats().RefreshCalls }

// seenTokens returns a copy of the bearers /echo saw.
func (e *env) seenTokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}

func count(xs []string, x string) int {
	n := 0
	for _, s := range xs {
		if s == x {
			n++
		}
	}
	return n
}

// gate blocks refresh requests until released; entered receives once per
// refresh request that reached it.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) Open() { g.once.Do(func() { close(g.release) }) }

// hook holds each refresh until Open, then lets the backend answer it.
func (g *gate) hook(w http.ResponseWriter, r *http.Request) bool {
	g.entered <- struct{}{}
	select {
	case <-g.release:
		return false
	case <-r.Context().Done():
		return true
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// barrier holds requests until n of them wait at once, then lets them and
// every later one through. A request whose context ends gives up (false).
type barrier struct {
	n       int
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, open: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) bool {
	b.mu.Lock()
	b.waiting++
	if b.waiting == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
		return true
	case <-ctx.Done():
		return false
	}
}

// hold parks the first request that match accepts until Release, and
// reports on held when it is parked. Later requests pass.
type hold struct {
	match   func(r *http.Request) bool
	held    chan struct{}
	release chan struct{}
	mu      sync.Mutex
	used    bool
	once    sync.Once
}

func newHold(match func(r *http.Request) bool) *hold {
	return &hold{match: match, held: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *hold) Release() { h.once.Do(func() { close(h.release) }) }

func (h *hold) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		park := !h.used && h.match(r)
		if park {
			h.used = true
		}
		h.mu.Unlock()
		if park {
			h.held <- struct{}{}
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// bearerOf returns the bearer token of r ("" when none).
func bearerOf(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// recv waits for one value of ch (failing the test when ctx ends first).
func recv[T any](t *testing.T, ctx context.Context, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting: %v", ctx.Err())
	}
	var zero T
	return zero
}

// testTransport returns a private transport with room for many idle
// connections, closed when the test ends (after the env it is given to, as
// long as it is created before newEnv).
func testTransport(t *testing.T, idle int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = idle
	tr.MaxIdleConnsPerHost = idle
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}
