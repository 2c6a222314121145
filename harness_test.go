package pigeon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// fakeClock is a clock tests move by hand; shared by the backend and pigeon.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// env is one test's world: the example backend behind a real httptest
// server, optionally wrapped, and an authorized client pointed at it.
type env struct {
	t     *testing.T
	be    *backend.Backend
	srv   *httptest.Server
	p     *pigeon.AuthorizedPigeon
	clock *fakeClock
	// seen records the bearer of every request to /echo, in order.
	mu   sync.Mutex
	seen []string
}

type envConfig struct {
	backend []backend.Option
	pigeon  []pigeon.Option
	// wrap may intercept requests before the backend sees them.
	wrap      func(next http.Handler) http.Handler
	refresher pigeon.RefreshTokenManager
	noClock   bool
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t}
	if !cfg.noClock {
		e.clock = newFakeClock()
		cfg.backend = append(cfg.backend, backend.WithClock(e.clock.Now))
		cfg.pigeon = append(cfg.pigeon, pigeon.WithClock(e.clock.Now))
	}
	e.be = backend.New(cfg.backend...)
	var h http.Handler = e.be
	if cfg.wrap != nil {
		h = cfg.wrap(h)
	}
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		e.srv.Close()
		e.be.Close()
	})
	refresher := cfg.refresher
	if refresher == nil {
		refresher = pigeon.JSONRefresher{Path: "/auth/refresh"}
	}
	opts := append([]pigeon.Option{
		pigeon.WithBaseURL(e.srv.URL),
		pigeon.WithInMemoryStore(),
		pigeon.WithLogger(zaptest.NewLogger(t)),
	}, cfg.pigeon...)
	p, err := pigeon.NewAuthorized(refresher, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	t.Cleanup(func() { _ = p.Close() })
	return e
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
