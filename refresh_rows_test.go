package pigeon_test

// One test (or table) per row of docs/refresh.md. Refresh calls are
// counted by the example backend (Stats().RefreshCalls), never by pigeon.
// Nothing sleeps to synchronise: refreshes are held by a gate, requests by
// server-side barriers and holds, time moves with the shared fake clock.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/transport"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

// rowResult is the outcome of one request made in a goroutine.
type rowResult struct {
	resp *pigeon.Response
	err  error
}

// rowGo starts a GET in a goroutine; its result arrives on the channel.
func rowGo(ctx context.Context, p pigeon.AppPigeon, path string, opts ...pigeon.RequestOption) <-chan rowResult {
	ch := make(chan rowResult, 1)
	go func() {
		r, err := p.Get(ctx, path, opts...)
		ch <- rowResult{r, err}
	}()
	return ch
}

// rowUID decodes the uid of an /echo answer.
func rowUID(t *testing.T, r *pigeon.Response) string {
	t.Helper()
	var ans struct{ Data backend.EchoAnswer }
	if err := r.Decode(&ans); err != nil {
		t.Fatalf("decoding /echo answer %q: %v", r.Body, err)
	}
	return ans.Data.UID
}

// rowString is a string shared between the test and server handlers.
type rowString struct{ v atomic.Pointer[string] }

func (a *rowString) Store(s string) { a.v.Store(&s) }
func (a *rowString) Load() string {
	if p := a.v.Load(); p != nil {
		return *p
	}
	return ""
}

// rowOriginals holds the /echo requests sent with one token at a barrier
// until n of them are at the server, and reports each answered one; the
// test then knows all n were refused with that token.
type rowOriginals struct {
	token    rowString
	barrier  *barrier
	answered chan struct{}
}

func newRowOriginals(n int) *rowOriginals {
	return &rowOriginals{barrier: newBarrier(n), answered: make(chan struct{}, n)}
}

func (o *rowOriginals) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/echo" || r.Header.Get("X-Hold") != "" || bearerOf(r) != o.token.Load() {
			next.ServeHTTP(w, r)
			return
		}
		if !o.barrier.wait(r.Context()) {
			return
		}
		next.ServeHTTP(w, r)
		select {
		case o.answered <- struct{}{}:
		default:
		}
	})
}

func (o *rowOriginals) awaitAnswered(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for range n {
		recv(t, ctx, o.answered)
	}
}

func rowChain(wraps ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		for i := len(wraps) - 1; i >= 0; i-- {
			next = wraps[i](next)
		}
		return next
	}
}

func rowHijackClose(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func rowCurrent(t *testing.T, ctx context.Context, p *pigeon.AuthorizedPigeon) pigeon.AuthRecord {
	t.Helper()
	rec, err := p.CurrentAuth(ctx)
	if err != nil {
		t.Fatalf("CurrentAuth: %v", err)
	}
	return rec
}

func rowWantCalls(t *testing.T, e *env, n int64) {
	t.Helper()
	if got := e.refreshCalls(); got != n {
		t.Fatalf("server saw %d refresh calls, want %d", got, n)
	}
}

// Row 1: 1000 concurrent 401s with T1 → one refresh; every request
// replayed once with T2, concurrently; all succeed.
func TestRefreshRow01_ThousandConcurrent401sOneRefresh(t *testing.T) {
	const n, concurrentReplays = 1000, 100
	tr := testTransport(t, n+100)
	orig := newRowOriginals(n)
	replays := newBarrier(concurrentReplays)
	e := newEnv(t, envConfig{
		pigeon: []pigeon.Option{pigeon.WithHTTPClient(&http.Client{Transport: tr})},
		wrap: rowChain(orig.wrap, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// A replay: the first 100 wait until 100 are in flight at
				// once, which a one-by-one replay never reaches.
				if r.URL.Path == "/echo" && bearerOf(r) != orig.token.Load() && !replays.wait(r.Context()) {
					return
				}
				next.ServeHTTP(w, r)
			})
		}),
	})
	tok := e.login("a@example.com")
	orig.token.Store(tok.AccessToken)
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			r, err := e.p.Get(ctx, "/echo")
			if err == nil {
				var ans struct{ Data backend.EchoAnswer }
				if derr := r.Decode(&ans); derr != nil || ans.Data.UID != tok.UID {
					err = fmt.Errorf("answer %s (%v)", r.Body, derr)
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed == 0 {
				t.Errorf("request failed: %v", err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, n)
	}
	rowWantCalls(t, e, 1)
	t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
	seen := e.seenTokens()
	if t2 == tok.AccessToken || count(seen, tok.AccessToken) != n || count(seen, t2) != n || len(seen) != 2*n {
		t.Fatalf("server saw %d requests: %d with T1, %d with T2; want %d each", len(seen), count(seen, tok.AccessToken), count(seen, t2), n)
	}
}

// Row 2: a request whose 401 arrives after the refresh to T2 finished is
// replayed with T2 without another refresh.
func TestRefreshRow02_Late401ReplaysWithoutRefresh(t *testing.T) {
	h := newHold(func(r *http.Request) bool { return r.URL.Path == "/echo" && r.Header.Get("X-Hold") != "" })
	e := newEnv(t, envConfig{wrap: h.wrap})
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)

	late := rowGo(ctx, e.p, "/echo", pigeon.WithHeader("X-Hold", "1"))
	recv(t, ctx, h.held) // sent with T1, its 401 not yet answered
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	rowWantCalls(t, e, 1)
	t2 := string(rowCurrent(t, ctx, e.p).AccessToken)

	h.Release()
	res := recv(t, ctx, late)
	if res.err != nil {
		t.Fatalf("late request: %v", res.err)
	}
	if uid := rowUID(t, res.resp); uid != tok.UID {
		t.Fatalf("late request answered for %q", uid)
	}
	rowWantCalls(t, e, 1)
	seen := e.seenTokens()
	if len(seen) != 4 || count(seen, tok.AccessToken) != 2 || count(seen, t2) != 2 {
		t.Fatalf("server saw %d requests (%d with T1, %d with T2), want 2 and 2", len(seen), count(seen, tok.AccessToken), count(seen, t2))
	}
}

// rowForbidden answers 401 on /forbidden whatever the token, recording the
// bearers it saw.
type rowForbidden struct {
	mu   sync.Mutex
	seen []string
}

func (f *rowForbidden) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/forbidden" {
			next.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, bearerOf(r))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"forbidden","message":"not for you"}}`)
	})
}

func (f *rowForbidden) bearers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// Row 3: the replay with the new token gets 401 again: no second refresh,
// the caller gets the 401 as *StatusError, the session is kept.
func TestRefreshRow03_ReplayRefusedAgainReturns401(t *testing.T) {
	f := &rowForbidden{}
	e := newEnv(t, envConfig{wrap: f.wrap})
	tok := e.login("a@example.com")
	ctx := ctxT(t)

	r, err := e.p.Get(ctx, "/forbidden")
	var se *pigeon.StatusError
	if !errors.As(err, &se) || se.Response.StatusCode != http.StatusUnauthorized || r == nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Get /forbidden = %v, %v; want the 401 as *StatusError", r, err)
	}
	rowWantCalls(t, e, 1)
	cur := rowCurrent(t, ctx, e.p) // the session is kept
	t2 := string(cur.AccessToken)
	if got := f.bearers(); !reflect.DeepEqual(got, []string{tok.AccessToken, t2}) || t2 == tok.AccessToken {
		t.Fatalf("/forbidden saw %d requests; want T1 then T2", len(got))
	}
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatalf("after the refused replay: %v", err)
	}
	rowWantCalls(t, e, 1)
	if seen := e.seenTokens(); !reflect.DeepEqual(seen, []string{t2}) {
		t.Fatal("/echo was not sent with T2")
	}
}

// Row 4: the refresh endpoint answers 400/401: the account's tokens are
// removed, one Unauthenticated status is published, every waiter and
// every late 401 of that session fails with ErrSessionExpired.
func TestRefreshRow04_RefreshRejectedEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // answered by the hook; 0: the backend rejects a revoked token (401)
	}{
		{"revoked token 401", 0},
		{"bad request 400", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5
			g := newGate()
			orig := newRowOriginals(n)
			h := newHold(func(r *http.Request) bool { return r.URL.Path == "/echo" && r.Header.Get("X-Hold") != "" })
			e := newEnv(t, envConfig{
				wrap: rowChain(h.wrap, orig.wrap),
				backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
					if g.hook(w, r) {
						return true
					}
					if tc.status != 0 {
						w.WriteHeader(tc.status)
						return true
					}
					return false
				})},
			})
			ctx := ctxT(t)
			tok := e.login("a@example.com")
			sub, err := e.p.SubscribeAuth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Authenticated, UID: tok.UID}) {
				t.Fatalf("first status %+v", st)
			}
			orig.token.Store(tok.AccessToken)
			if tc.status == 0 {
				e.be.RevokeRefreshToken(tok.RefreshToken)
			}
			e.be.ExpireAccessToken(tok.AccessToken)

			late := rowGo(ctx, e.p, "/echo", pigeon.WithHeader("X-Hold", "1"))
			recv(t, ctx, h.held)
			var waiters []<-chan rowResult
			for range n {
				waiters = append(waiters, rowGo(ctx, e.p, "/echo"))
			}
			orig.awaitAnswered(t, ctx, n)
			recv(t, ctx, g.entered)
			g.Open()
			for i, w := range waiters {
				if res := recv(t, ctx, w); !errors.Is(res.err, pigeon.ErrSessionExpired) {
					t.Fatalf("waiter %d: %v, want ErrSessionExpired", i, res.err)
				}
			}
			if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Unauthenticated}) {
				t.Fatalf("status after rejection %+v", st)
			}
			h.Release()
			if res := recv(t, ctx, late); !errors.Is(res.err, pigeon.ErrSessionExpired) {
				t.Fatalf("late 401 of the ended session: %v, want ErrSessionExpired", res.err)
			}
			rowWantCalls(t, e, 1)
			if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
				t.Fatalf("CurrentAuth after rejection: %v", err)
			}
			if all, err := e.p.AllAuths(ctx); err != nil || len(all) != 0 {
				t.Fatalf("AllAuths after rejection: %d records, %v", len(all), err)
			}
			// Exactly one Unauthenticated: the next value is the next login.
			tok2 := e.login("b@example.com")
			if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Authenticated, UID: tok2.UID}) {
				t.Fatalf("status after the next login %+v", st)
			}
		})
	}
}

// Row 5: a 5xx, network error or timeout is transient: tokens kept,
// waiters fail with ErrRefreshUnavailable, new 401s fail fast without a
// refresh call during the backoff, and a refresh runs again after it.
func TestRefreshRow05_TransientFailureBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(w http.ResponseWriter, r *http.Request)
		opts []pigeon.Option
	}{
		{"503", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }, nil},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }, nil},
		{"network error", func(w http.ResponseWriter, r *http.Request) { rowHijackClose(w) }, nil},
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			[]pigeon.Option{pigeon.WithRefreshTimeout(250 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			failing.Store(true)
			e := newEnv(t, envConfig{
				pigeon: tc.opts,
				backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
					if failing.Load() {
						tc.fail(w, r)
						return true
					}
					return false
				})},
			})
			tok := e.login("a@example.com")
			e.be.ExpireAccessToken(tok.AccessToken)
			ctx := ctxT(t)

			var waiters []<-chan rowResult
			for range 3 {
				waiters = append(waiters, rowGo(ctx, e.p, "/echo"))
			}
			for i, w := range waiters {
				if res := recv(t, ctx, w); !errors.Is(res.err, pigeon.ErrRefreshUnavailable) {
					t.Fatalf("request %d: %v, want ErrRefreshUnavailable", i, res.err)
				}
			}
			rowWantCalls(t, e, 1)
			cur := rowCurrent(t, ctx, e.p)
			if string(cur.AccessToken) != tok.AccessToken || string(cur.RefreshToken) != tok.RefreshToken {
				t.Fatal("tokens were not kept after a transient failure")
			}
			// Backing off: a new 401 fails fast without a refresh call,
			// even though the endpoint would now answer.
			failing.Store(false)
			if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrRefreshUnavailable) {
				t.Fatalf("401 during backoff: %v, want ErrRefreshUnavailable", err)
			}
			rowWantCalls(t, e, 1)
			e.clock.Advance(2 * time.Second) // past the first backoff (< 1s)
			r, err := e.p.Get(ctx, "/echo")
			if err != nil {
				t.Fatalf("after the backoff: %v", err)
			}
			if uid := rowUID(t, r); uid != tok.UID {
				t.Fatalf("answered for %q", uid)
			}
			rowWantCalls(t, e, 2)
		})
	}
}

// rowClassifying is a refresher that decides itself what a refresh endpoint
// failure means: 418 is a rejection (terminal), 503 is transient.
type rowClassifying struct{ pigeon.JSONRefresher }

func (c rowClassifying) RefreshToken(ctx context.Context, rt string, rc *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	r, err := rc.Post(ctx, "/auth/refresh", map[string]string{"refreshToken": rt})
	var se *pigeon.StatusError
	if errors.As(err, &se) {
		switch r.StatusCode {
		case http.StatusTeapot:
			return pigeon.RefreshTokenResponse{}, fmt.Errorf("refresher: teapot: %w", pigeon.ErrRefreshRejected)
		default:
			return pigeon.RefreshTokenResponse{}, fmt.Errorf("refresher: status %d", r.StatusCode)
		}
	}
	if err != nil {
		return pigeon.RefreshTokenResponse{}, err
	}
	return c.JSONRefresher.RefreshToken(ctx, rt, rc) // never reached in this test
}

// Row 5 (classification): an error wrapping ErrRefreshRejected is
// terminal, any other error transient.
func TestRefreshRow05_RefresherClassifiesErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		want     error
		keepsTok bool
	}{
		{"rejected is terminal", http.StatusTeapot, pigeon.ErrSessionExpired, false},
		{"other errors are transient", http.StatusServiceUnavailable, pigeon.ErrRefreshUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{
				refresher: rowClassifying{},
				backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
					w.WriteHeader(tc.status)
					return true
				})},
			})
			tok := e.login("a@example.com")
			e.be.ExpireAccessToken(tok.AccessToken)
			ctx := ctxT(t)
			if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, tc.want) {
				t.Fatalf("Get: %v, want %v", err, tc.want)
			}
			rowWantCalls(t, e, 1)
			_, err := e.p.CurrentAuth(ctx)
			if kept := err == nil; kept != tc.keepsTok {
				t.Fatalf("tokens kept = %v (CurrentAuth: %v), want %v", kept, err, tc.keepsTok)
			}
		})
	}
}

// Row 6: a hanging refresh ends at the refresh timeout, whatever the
// caller's context allows.
func TestRefreshRow06_HangingRefreshTimesOut(t *testing.T) {
	abandoned := make(chan struct{}, 1)
	e := newEnv(t, envConfig{
		pigeon: []pigeon.Option{pigeon.WithRefreshTimeout(50 * time.Millisecond)},
		backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done()
			abandoned <- struct{}{}
			return true
		})},
	})
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t) // 30s: far longer than the refresh timeout

	_, err := e.p.Get(ctx, "/echo")
	if !errors.Is(err, pigeon.ErrRefreshUnavailable) || ctx.Err() != nil {
		t.Fatalf("Get: %v (caller ctx: %v), want ErrRefreshUnavailable before the caller's deadline", err, ctx.Err())
	}
	recv(t, ctx, abandoned) // the refresh request itself was given up
	rowWantCalls(t, e, 1)
	if cur := rowCurrent(t, ctx, e.p); string(cur.RefreshToken) != tok.RefreshToken {
		t.Fatal("refresh token not kept after a timeout")
	}
}

// rowWhoLog records, per X-Who header, the bearers /echo saw.
type rowWhoLog struct {
	mu  sync.Mutex
	who map[string][]string
}

func (l *rowWhoLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			l.mu.Lock()
			if l.who == nil {
				l.who = map[string][]string{}
			}
			k := r.Header.Get("X-Who")
			l.who[k] = append(l.who[k], bearerOf(r))
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (l *rowWhoLog) get(k string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.who[k]...)
}

// Row 7: a waiter whose ctx is cancelled returns ctx.Err() at once and is
// never replayed; the other waiter is unaffected.
func TestRefreshRow07_CancelledWaiterReturnsAtOnce(t *testing.T) {
	g := newGate()
	orig := newRowOriginals(2)
	who := &rowWhoLog{}
	e := newEnv(t, envConfig{
		wrap:    rowChain(who.wrap, orig.wrap),
		backend: []backend.Option{backend.WithRefreshHook(g.hook)},
	})
	tok := e.login("a@example.com")
	orig.token.Store(tok.AccessToken)
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)
	ctxA, cancelA := context.WithCancel(ctx)
	defer cancelA()

	a := rowGo(ctxA, e.p, "/echo", pigeon.WithHeader("X-Who", "a"))
	b := rowGo(ctx, e.p, "/echo", pigeon.WithHeader("X-Who", "b"))
	orig.awaitAnswered(t, ctx, 2)
	recv(t, ctx, g.entered)
	cancelA()
	// The refresh is still held: a must return now, not after it.
	if res := recv(t, ctx, a); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", res.err)
	}
	g.Open()
	res := recv(t, ctx, b)
	if res.err != nil {
		t.Fatalf("other waiter: %v", res.err)
	}
	if uid := rowUID(t, res.resp); uid != tok.UID {
		t.Fatalf("other waiter answered for %q", uid)
	}
	t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
	if got := who.get("a"); !reflect.DeepEqual(got, []string{tok.AccessToken}) {
		t.Fatalf("cancelled waiter was sent %d times, want once with T1", len(got))
	}
	if got := who.get("b"); !reflect.DeepEqual(got, []string{tok.AccessToken, t2}) {
		t.Fatalf("other waiter sent %d times, want T1 then T2", len(got))
	}
	rowWantCalls(t, e, 1)
}

// Row 8: every waiter cancels, including the one that started the
// refresh: the refresh completes and its rotated tokens are persisted.
func TestRefreshRow08_AllWaitersCancelRefreshStillPersists(t *testing.T) {
	dir := t.TempDir()
	g := newGate()
	orig := newRowOriginals(2)
	e := newEnv(t, envConfig{
		storeDir: dir,
		wrap:     orig.wrap,
		backend:  []backend.Option{backend.WithRefreshHook(g.hook)},
	})
	tok := e.login("a@example.com")
	orig.token.Store(tok.AccessToken)
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)
	ctxA, cancelA := context.WithCancel(ctx)
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelA()
	defer cancelB()

	a := rowGo(ctxA, e.p, "/echo")
	b := rowGo(ctxB, e.p, "/echo")
	orig.awaitAnswered(t, ctx, 2)
	recv(t, ctx, g.entered)
	cancelA()
	cancelB()
	for _, ch := range []<-chan rowResult{a, b} {
		if res := recv(t, ctx, ch); !errors.Is(res.err, context.Canceled) {
			t.Fatalf("cancelled waiter: %v", res.err)
		}
	}
	g.Open()
	// A new request waits for the refresh still in flight (or uses its
	// result): it goes out with the rotated token, no second refresh.
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	rowWantCalls(t, e, 1)
	seen := e.seenTokens()
	t2 := seen[len(seen)-1]
	cur := rowCurrent(t, ctx, e.p)
	if t2 == tok.AccessToken || string(cur.AccessToken) != t2 || string(cur.RefreshToken) == tok.RefreshToken {
		t.Fatal("the rotated tokens were not stored")
	}

	e.reopen()
	again := rowCurrent(t, ctx, e.p)
	if again.AccessToken != cur.AccessToken || again.RefreshToken != cur.RefreshToken || !again.ExpiresAt.Equal(cur.ExpiresAt) {
		t.Fatal("after reopening, the store does not hold the rotated tokens")
	}
	// The persisted refresh token is the live one: refreshing with it works.
	e.be.ExpireAccessToken(t2)
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatalf("refresh with the persisted refresh token: %v", err)
	}
	rowWantCalls(t, e, 2)
}

// Row 9: LogOut while a refresh is in flight: the late result is
// discarded (not stored, no event); waiters and late 401s of that session
// fail with ErrLoggedOut.
func TestRefreshRow09_LogOutDuringRefreshDiscardsResult(t *testing.T) {
	g := newGate()
	h := newHold(func(r *http.Request) bool { return r.URL.Path == "/echo" && r.Header.Get("X-Hold") != "" })
	e := newEnv(t, envConfig{wrap: h.wrap, backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	tok := e.login("a@example.com")
	sub, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ctx, sub) // Authenticated
	e.be.ExpireAccessToken(tok.AccessToken)

	late := rowGo(ctx, e.p, "/echo", pigeon.WithHeader("X-Hold", "1"))
	recv(t, ctx, h.held)
	waiter := rowGo(ctx, e.p, "/echo")
	recv(t, ctx, g.entered)
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, sub); st.State != pigeon.Unauthenticated {
		t.Fatalf("status after LogOut %+v", st)
	}
	g.Open()
	if res := recv(t, ctx, waiter); !errors.Is(res.err, pigeon.ErrLoggedOut) {
		t.Fatalf("waiter: %v, want ErrLoggedOut", res.err)
	}
	h.Release()
	if res := recv(t, ctx, late); !errors.Is(res.err, pigeon.ErrLoggedOut) {
		t.Fatalf("late 401 of the logged-out session: %v, want ErrLoggedOut", res.err)
	}
	rowWantCalls(t, e, 1)
	if all, err := e.p.AllAuths(ctx); err != nil || len(all) != 0 {
		t.Fatalf("the late refresh result was stored: %d records, %v", len(all), err)
	}
	if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("CurrentAuth: %v", err)
	}
	// No event for the discarded result: the next one is the next login.
	tok2 := e.login("b@example.com")
	if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Authenticated, UID: tok2.UID}) {
		t.Fatalf("next status %+v", st)
	}
}

// Row 10: SwitchAccount while a refresh is in flight: the result goes to
// the account that started it; its waiters replay as that account; new
// requests use the new account at once.
func TestRefreshRow10_SwitchDuringRefresh(t *testing.T) {
	g := newGate()
	e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	b := e.login("b@example.com")
	a := e.login("a@example.com") // current
	e.be.ExpireAccessToken(a.AccessToken)

	waiter := rowGo(ctx, e.p, "/echo")
	recv(t, ctx, g.entered)
	if err := e.p.SwitchAccount(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	// a's refresh is still held; b's request does not wait for it.
	r, err := e.p.Get(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	if uid := rowUID(t, r); uid != b.UID {
		t.Fatalf("new request sent as %q, want the new account", uid)
	}
	g.Open()
	res := recv(t, ctx, waiter)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if uid := rowUID(t, res.resp); uid != a.UID {
		t.Fatalf("waiter replayed as %q, want the account that started the refresh", uid)
	}
	rowWantCalls(t, e, 1)
	all, err := e.p.AllAuths(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("AllAuths: %d, %v", len(all), err)
	}
	recs := map[string]pigeon.AuthRecord{}
	for _, rec := range all {
		recs[rec.UID] = rec
	}
	ra, rb := recs[a.UID], recs[b.UID]
	if string(ra.AccessToken) == a.AccessToken || string(ra.RefreshToken) == a.RefreshToken {
		t.Fatal("the refresh result was not written to the account that started it")
	}
	if string(rb.AccessToken) != b.AccessToken || string(rb.RefreshToken) != b.RefreshToken {
		t.Fatal("the refresh result was written to the current account")
	}
	if seen := e.seenTokens(); count(seen, string(ra.AccessToken)) != 1 {
		t.Fatal("the waiter was not replayed with the refreshed token of its account")
	}
	if cur := rowCurrent(t, ctx, e.p); cur.UID != b.UID {
		t.Fatalf("current account %q, want %q", cur.UID, b.UID)
	}
}

// rowRefreshAnswers records the tokens of every /auth/refresh answer and can
// strip the refresh token from them.
type rowRefreshAnswers struct {
	strip  bool
	mu     sync.Mutex
	tokens []string
}

func (ra *rowRefreshAnswers) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/refresh" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var ans struct {
			Data map[string]any `json:"data"`
		}
		if rec.Code == http.StatusOK && json.Unmarshal(body, &ans) == nil && ans.Data != nil {
			ra.mu.Lock()
			for _, k := range []string{"accessToken", "refreshToken"} {
				if s, ok := ans.Data[k].(string); ok {
					ra.tokens = append(ra.tokens, s)
				}
			}
			ra.mu.Unlock()
			if ra.strip {
				delete(ans.Data, "refreshToken")
				body, _ = json.Marshal(ans)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

func (ra *rowRefreshAnswers) all() []string {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return append([]string(nil), ra.tokens...)
}

// Row 11: rotating refresh tokens: the refresh token is read inside the
// flight; access, refresh and expiry are saved (synced) before the
// replay; an answer without a refresh token keeps the old one.
func TestRefreshRow11_RotatingRefreshTokens(t *testing.T) {
	t.Run("read inside the flight", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		ctx := ctxT(t)
		tok := e.login("a@example.com")
		// Each refresh must use the token the previous one rotated to.
		for range 3 {
			e.be.ExpireAccessToken(string(rowCurrent(t, ctx, e.p).AccessToken))
			if _, err := e.p.Get(ctx, "/echo"); err != nil {
				t.Fatal(err)
			}
		}
		// A re-login between flights replaces the refresh token; the old
		// one is revoked, so only the newly stored one can work.
		old := rowCurrent(t, ctx, e.p)
		fresh, err := e.be.IssueTokens(tok.UID)
		if err != nil {
			t.Fatal(err)
		}
		e.save(fresh)
		e.be.RevokeRefreshToken(string(old.RefreshToken))
		e.be.ExpireAccessToken(fresh.AccessToken)
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatalf("refresh after re-login: %v", err)
		}
		st := e.be.Stats()
		if st.RefreshCalls != 4 || st.RefreshSucceeded != 4 || st.RefreshRejected != 0 {
			t.Fatalf("server: %d refresh calls, %d rotated, %d rejected; want 4, 4, 0", st.RefreshCalls, st.RefreshSucceeded, st.RefreshRejected)
		}
	})

	t.Run("saved before the replay and persisted", func(t *testing.T) {
		dir := t.TempDir()
		var ep atomic.Pointer[env] // the env, for the handler
		var first rowString
		var atReplay struct {
			mu  sync.Mutex
			rec pigeon.AuthRecord
			err error
			ok  bool
		}
		answers := &rowRefreshAnswers{}
		e := newEnv(t, envConfig{storeDir: dir, wrap: rowChain(answers.wrap, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/echo" && bearerOf(r) != first.Load() {
					// The replay: what does the client's store hold now?
					rec, err := ep.Load().p.CurrentAuth(r.Context())
					atReplay.mu.Lock()
					atReplay.rec, atReplay.err, atReplay.ok = rec, err, true
					atReplay.mu.Unlock()
				}
				next.ServeHTTP(w, r)
			})
		})})
		ep.Store(e)
		ctx := ctxT(t)
		tok := e.login("a@example.com")
		first.Store(tok.AccessToken)
		e.be.ExpireAccessToken(tok.AccessToken)
		e.clock.Advance(time.Minute) // the new expiry differs from the old one
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatal(err)
		}
		rowWantCalls(t, e, 1)
		issued := answers.all()
		if len(issued) != 2 {
			t.Fatalf("refresh answers carried %d tokens", len(issued))
		}
		wantExp := e.clock.Now().Add(backend.DefaultAccessTTL)
		atReplay.mu.Lock()
		rec, err, ok := atReplay.rec, atReplay.err, atReplay.ok
		atReplay.mu.Unlock()
		if !ok || err != nil {
			t.Fatalf("no replay seen (%v, %v)", ok, err)
		}
		if string(rec.AccessToken) != issued[0] || string(rec.RefreshToken) != issued[1] || !rec.ExpiresAt.Equal(wantExp) {
			t.Fatalf("at the replay the store held expiry %v and other tokens; want the refresh's (expiry %v)", rec.ExpiresAt, wantExp)
		}
		e.reopen()
		again := rowCurrent(t, ctx, e.p)
		if string(again.AccessToken) != issued[0] || string(again.RefreshToken) != issued[1] || !again.ExpiresAt.Equal(wantExp) {
			t.Fatal("after reopening, the store does not hold the complete refreshed record")
		}
	})

	t.Run("answer without refresh token keeps the old one", func(t *testing.T) {
		dir := t.TempDir()
		answers := &rowRefreshAnswers{strip: true}
		e := newEnv(t, envConfig{storeDir: dir, wrap: answers.wrap})
		ctx := ctxT(t)
		tok := e.login("a@example.com")
		e.be.ExpireAccessToken(tok.AccessToken)
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatal(err)
		}
		rowWantCalls(t, e, 1)
		issued := answers.all()
		for _, check := range []func(){func() {}, e.reopen} {
			check()
			cur := rowCurrent(t, ctx, e.p)
			if len(issued) != 2 || string(cur.AccessToken) != issued[0] || string(cur.RefreshToken) != tok.RefreshToken {
				t.Fatal("want the new access token with the old refresh token")
			}
		}
	})
}

// rowOAuthEndpoint serves an RFC 6749 token endpoint at /oauth/token in
// front of the backend's /auth/refresh (which counts the call), answering
// expires_in instead of an expiry time.
func rowOAuthEndpoint(clock *wstest.Clock) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/oauth/token" {
				next.ServeHTTP(w, r)
				return
			}
			if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
				http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
				return
			}
			body, _ := json.Marshal(map[string]string{"refreshToken": r.PostForm.Get("refresh_token")})
			inner := httptest.NewRequestWithContext(r.Context(), http.MethodPost, "/auth/refresh", bytes.NewReader(body))
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, inner)
			w.Header().Set("Content-Type", "application/json")
			if rec.Code != http.StatusOK {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
				return
			}
			var ans struct {
				Data struct {
					AccessToken  string    `json:"accessToken"`
					RefreshToken string    `json:"refreshToken"`
					ExpiresAt    time.Time `json:"expiresAt"`
				} `json:"data"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &ans)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"access_token": ans.Data.AccessToken, "refresh_token": ans.Data.RefreshToken, "token_type": "Bearer",
				"expires_in": int(ans.Data.ExpiresAt.Sub(clock.Now()) / time.Second),
			})
		})
	}
}

// Row 12: proactive refresh when the expiry is known.
func TestRefreshRow12_ProactiveRefresh(t *testing.T) {
	const ttl = 10 * time.Minute
	// background checks the refresh-ahead window: a request there starts
	// one background refresh and goes out with the still-valid token;
	// then a request in the hard window waits for that refresh.
	background := func(t *testing.T, e *env, g *gate, t1 string, untilAhead, aheadToHard time.Duration) {
		t.Helper()
		ctx := ctxT(t)
		e.clock.Advance(untilAhead)
		before := e.refreshCalls()
		for range 2 { // the refresh is held: neither request may wait for it
			if _, err := e.p.Get(ctx, "/echo"); err != nil {
				t.Fatal(err)
			}
			seen := e.seenTokens()
			if last := seen[len(seen)-1]; last != t1 {
				t.Fatal("a request in the refresh-ahead window did not use the valid token")
			}
		}
		recv(t, ctx, g.entered)
		e.clock.Advance(aheadToHard)
		hard := rowGo(ctx, e.p, "/echo")
		g.Open()
		if res := recv(t, ctx, hard); res.err != nil {
			t.Fatal(res.err)
		}
		seen := e.seenTokens()
		t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
		if t2 == t1 || seen[len(seen)-1] != t2 {
			t.Fatal("the request in the hard window did not wait for the new token")
		}
		rowWantCalls(t, e, before+1)
		// A fresh token is not refreshed again.
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatal(err)
		}
		rowWantCalls(t, e, before+1)
	}

	t.Run("ExpiresAt", func(t *testing.T) {
		g := newGate()
		e := newEnv(t, envConfig{backend: []backend.Option{backend.WithAccessTTL(ttl), backend.WithRefreshHook(g.hook)}})
		tok := e.login("a@example.com")
		if _, err := e.p.Get(ctxT(t), "/echo"); err != nil {
			t.Fatal(err)
		}
		rowWantCalls(t, e, 0)
		// Idle inside the window: nothing refreshes until a request is made.
		e.clock.Advance(ttl - 55*time.Second)
		rowWantCalls(t, e, 0)
		background(t, e, g, tok.AccessToken, 5*time.Second, 45*time.Second) // 50s left, then 5s
	})

	t.Run("JWT exp", func(t *testing.T) {
		g := newGate()
		e := newEnv(t, envConfig{backend: []backend.Option{backend.WithAccessTTL(ttl), backend.WithJWTAccessTokens(), backend.WithRefreshHook(g.hook)}})
		tok, err := e.be.CreateUser("a@example.com", "pw")
		if err != nil {
			t.Fatal(err)
		}
		e.save(backend.Tokens{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}) // no ExpiresAt
		if cur := rowCurrent(t, ctxT(t), e.p); !cur.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Fatalf("expiry read from the JWT %v, want %v", cur.ExpiresAt, tok.ExpiresAt)
		}
		background(t, e, g, tok.AccessToken, ttl-50*time.Second, 45*time.Second)
	})

	t.Run("expires_in after a reactive refresh", func(t *testing.T) {
		g := newGate()
		var hooked atomic.Int64
		e := newEnv(t, envConfig{
			backend: []backend.Option{backend.WithAccessTTL(ttl), backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
				if hooked.Add(1) == 1 {
					return false // the reactive refresh passes
				}
				return g.hook(w, r)
			})},
			wrapEnv: func(e *env, next http.Handler) http.Handler { return rowOAuthEndpoint(e.clock)(next) },
			refresherFor: func(e *env) pigeon.RefreshTokenManager {
				return pigeon.OAuth2Refresher{TokenURL: e.srv.URL + "/oauth/token", ClientID: "app"}
			},
		})
		tok := e.login("a@example.com")
		ctx := ctxT(t)
		// A 401 still triggers the reactive path.
		e.be.ExpireAccessToken(tok.AccessToken)
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatal(err)
		}
		rowWantCalls(t, e, 1)
		cur := rowCurrent(t, ctx, e.p)
		if want := e.clock.Now().Add(ttl); !cur.ExpiresAt.Equal(want) {
			t.Fatalf("expiry from expires_in %v, want %v", cur.ExpiresAt, want)
		}
		background(t, e, g, string(cur.AccessToken), ttl-50*time.Second, 45*time.Second)
	})

	t.Run("idle in the hard window: the request waits", func(t *testing.T) {
		g := newGate()
		e := newEnv(t, envConfig{backend: []backend.Option{backend.WithAccessTTL(ttl), backend.WithRefreshHook(g.hook)}})
		tok := e.login("a@example.com")
		ctx := ctxT(t)
		e.clock.Advance(ttl - 5*time.Second)
		rowWantCalls(t, e, 0)
		req := rowGo(ctx, e.p, "/echo")
		recv(t, ctx, g.entered)
		select {
		case res := <-req:
			t.Fatalf("request in the hard window did not wait for the refresh: %v", res.err)
		default:
		}
		g.Open()
		if res := recv(t, ctx, req); res.err != nil {
			t.Fatal(res.err)
		}
		if seen := e.seenTokens(); len(seen) != 1 || seen[0] == tok.AccessToken {
			t.Fatal("the request went out with the old token")
		}
		rowWantCalls(t, e, 1)
	})

	t.Run("short-lived token: windows shrink", func(t *testing.T) {
		const short = 30 * time.Second // windows: ahead 15s, hard 7.5s
		g := newGate()
		e := newEnv(t, envConfig{backend: []backend.Option{backend.WithAccessTTL(short), backend.WithRefreshHook(g.hook)}})
		tok := e.login("a@example.com")
		ctx := ctxT(t)
		for _, step := range []time.Duration{0, 10 * time.Second} { // 30s, then 20s left
			e.clock.Advance(step)
			if _, err := e.p.Get(ctx, "/echo"); err != nil {
				t.Fatal(err)
			}
			rowWantCalls(t, e, 0)
		}
		background(t, e, g, tok.AccessToken, 6*time.Second, 7*time.Second) // 14s left, then 7s
	})
}

// rowBodyLog records the body of every POST /echo with its bearer.
type rowBodyLog struct {
	mu     sync.Mutex
	bodies []string
}

func (l *rowBodyLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" && r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			l.mu.Lock()
			l.bodies = append(l.bodies, string(b))
			l.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		next.ServeHTTP(w, r)
	})
}

func (l *rowBodyLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.bodies...)
}

// Row 13: a body without GetBody cannot be replayed: the refresh still
// happens, the caller gets ErrBodyNotReplayable wrapping the 401, no empty
// body is ever sent. Facade bodies are always replayable.
func TestRefreshRow13_BodyNotReplayable(t *testing.T) {
	bodies := &rowBodyLog{}
	e := newEnv(t, envConfig{wrap: bodies.wrap})
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)

	// struct{io.Reader} hides the concrete reader: no GetBody.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/echo", struct{ io.Reader }{strings.NewReader("one-shot")})
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		t.Fatal("test body is replayable")
	}
	resp, err := e.p.HTTPClient().Do(req)
	if resp != nil {
		resp.Body.Close()
		t.Fatalf("got a response %d, want an error", resp.StatusCode)
	}
	var re *transport.ReplayError
	if !errors.Is(err, pigeon.ErrBodyNotReplayable) || !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HTTPClient().Do = %v; want ErrBodyNotReplayable wrapping the 401", err)
	}
	rowWantCalls(t, e, 1) // the refresh still happened
	t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
	if t2 == tok.AccessToken {
		t.Fatal("the token was not refreshed")
	}

	// The facade buffers any body: it is replayed whole.
	e.be.ExpireAccessToken(t2)
	r, err := e.p.Post(ctx, "/echo", struct{ io.Reader }{strings.NewReader("facade body")})
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Data backend.EchoAnswer }
	if err := r.Decode(&ans); err != nil || ans.Data.Body != "facade body" {
		t.Fatalf("replayed body %q (%v)", ans.Data.Body, err)
	}
	rowWantCalls(t, e, 2)
	if got := bodies.all(); !reflect.DeepEqual(got, []string{"one-shot", "facade body", "facade body"}) {
		t.Fatalf("server saw bodies %q", got)
	}
}

// Row 14: a transport error (no response) is never replayed.
func TestRefreshRow14_TransportErrorNotReplayed(t *testing.T) {
	tr := testTransport(t, 10)
	tr.DisableKeepAlives = true // a fresh connection each time: net/http never retries either
	var drops atomic.Int64
	e := newEnv(t, envConfig{
		pigeon: []pigeon.Option{pigeon.WithHTTPClient(&http.Client{Transport: tr})},
		wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/drop" {
					drops.Add(1)
					rowHijackClose(w)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	tok := e.login("a@example.com")
	ctx := ctxT(t)
	for i, do := range []func() (*pigeon.Response, error){
		func() (*pigeon.Response, error) { return e.p.Get(ctx, "/drop") },
		func() (*pigeon.Response, error) { return e.p.Post(ctx, "/drop", map[string]int{"n": 1}) },
		func() (*pigeon.Response, error) {
			e.be.ExpireAccessToken(tok.AccessToken) // even with an expired token
			return e.p.Put(ctx, "/drop", "x")
		},
	} {
		r, err := do()
		var se *pigeon.StatusError
		if err == nil || r != nil || errors.As(err, &se) {
			t.Fatalf("request %d: %v, %v; want a transport error", i, r, err)
		}
		if n := drops.Load(); n != int64(i+1) {
			t.Fatalf("request %d reached the server %d times in all, want %d", i, n, i+1)
		}
	}
	rowWantCalls(t, e, 0)
}

// Row 15: a request started while a refresh is in flight waits for the
// new token instead of going out with the stale one.
func TestRefreshRow15_NewRequestWaitsForRefresh(t *testing.T) {
	const n = 20
	g := newGate()
	e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	tok := e.login("a@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)

	first := rowGo(ctx, e.p, "/echo")
	recv(t, ctx, g.entered)
	// entered signals once a request is inside the client's transport.
	entered := make(chan struct{}, n)
	inner := e.p.HTTPClient()
	client := &http.Client{Transport: rowRoundTrip(func(r *http.Request) (*http.Response, error) {
		entered <- struct{}{}
		return inner.Transport.RoundTrip(r)
	})}
	results := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/echo", nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			results <- err
		}()
	}
	for range n {
		recv(t, ctx, entered)
	}
	select {
	case err := <-results:
		t.Fatalf("a new request finished while the refresh was held: %v", err)
	default:
	}
	g.Open()
	if res := recv(t, ctx, first); res.err != nil {
		t.Fatal(res.err)
	}
	for range n {
		if err := recv(t, ctx, results); err != nil {
			t.Fatal(err)
		}
	}
	rowWantCalls(t, e, 1)
	t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
	if seen := e.seenTokens(); count(seen, tok.AccessToken) != 1 || count(seen, t2) != n+1 {
		t.Fatalf("server saw %d requests with the stale token, %d with the new one; want 1 and %d",
			count(seen, tok.AccessToken), count(seen, t2), n+1)
	}
}

type rowRoundTrip func(*http.Request) (*http.Response, error)

func (f rowRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// rowProbing is a refresher that first calls a bearer-protected endpoint
// through the RefreshClient: through an auth layer that would loop (or
// deadlock on its own refresh).
type rowProbing struct {
	base   string
	status chan int
}

func (p rowProbing) ShouldRefresh(r *http.Response) bool {
	return r.StatusCode == http.StatusUnauthorized
}

func (p rowProbing) RefreshToken(ctx context.Context, rt string, c *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/echo", nil)
	if err != nil {
		return pigeon.RefreshTokenResponse{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return pigeon.RefreshTokenResponse{}, err
	}
	resp.Body.Close()
	p.status <- resp.StatusCode
	return pigeon.JSONRefresher{}.RefreshToken(ctx, rt, c)
}

// Row 16: the refresh endpoint and replays go through a client without the
// auth interceptor: no bearer on it, no loops, at most one replay.
func TestRefreshRow16_RefreshClientHasNoAuthLayer(t *testing.T) {
	t.Run("refresh requests carry no bearer and never refresh", func(t *testing.T) {
		status := make(chan int, 1)
		var refreshAuth rowString
		refreshAuth.Store("unset")
		e := newEnv(t, envConfig{
			refresherFor: func(e *env) pigeon.RefreshTokenManager { return rowProbing{base: e.srv.URL, status: status} },
			backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
				refreshAuth.Store(r.Header.Get("Authorization"))
				return false
			})},
		})
		tok := e.login("a@example.com")
		e.be.ExpireAccessToken(tok.AccessToken)
		ctx := ctxT(t)
		if _, err := e.p.Get(ctx, "/echo"); err != nil {
			t.Fatal(err)
		}
		if s := recv(t, ctx, status); s != http.StatusUnauthorized {
			t.Fatalf("protected call from the refresher answered %d, want a plain 401", s)
		}
		if a := refreshAuth.Load(); a != "" {
			t.Fatal("the refresh request carried an Authorization header")
		}
		rowWantCalls(t, e, 1)
		t2 := string(rowCurrent(t, ctx, e.p).AccessToken)
		if seen := e.seenTokens(); !reflect.DeepEqual(seen, []string{tok.AccessToken, "", t2}) {
			t.Fatalf("/echo saw %d requests; want T1, the refresher's unauthenticated probe, T2", len(seen))
		}
	})

	t.Run("refresh endpoint 401 does not loop", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		tok := e.login("a@example.com")
		e.be.RevokeRefreshToken(tok.RefreshToken)
		e.be.ExpireAccessToken(tok.AccessToken)
		if _, err := e.p.Get(ctxT(t), "/echo"); !errors.Is(err, pigeon.ErrSessionExpired) {
			t.Fatalf("Get: %v", err)
		}
		rowWantCalls(t, e, 1)
	})

	t.Run("at most one replay per request", func(t *testing.T) {
		f := &rowForbidden{}
		e := newEnv(t, envConfig{wrap: f.wrap})
		e.login("a@example.com")
		ctx := ctxT(t)
		for i := range 3 {
			if _, err := e.p.Get(ctx, "/forbidden"); err == nil {
				t.Fatal("want the 401")
			}
			if got := len(f.bearers()); got != 2*(i+1) {
				t.Fatalf("after %d requests the server saw %d, want %d", i+1, got, 2*(i+1))
			}
		}
		rowWantCalls(t, e, 3)
	})
}

// Row 17: ghost mode: no refresh, no auth events, a bearer only after
// SetAuthToken, 401 passes through.
func TestRefreshRow17_GhostMode(t *testing.T) {
	be := backend.New()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			mu.Lock()
			seen = append(seen, bearerOf(r))
			mu.Unlock()
		}
		be.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); be.Close() })
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL), pigeon.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if _, ok := reflect.TypeOf(g).MethodByName("SubscribeAuth"); ok {
		t.Fatal("a ghost client has an auth-status stream")
	}
	ctx := ctxT(t)
	want401 := func() {
		t.Helper()
		r, err := g.Get(ctx, "/echo")
		var se *pigeon.StatusError
		if !errors.As(err, &se) || r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Get = %v, %v; want the 401", r, err)
		}
	}
	want401() // no token: no bearer
	tok, err := be.CreateUser("a@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	g.SetAuthToken(tok.AccessToken)
	r, err := g.Get(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	if uid := rowUID(t, r); uid != tok.UID {
		t.Fatalf("answered for %q", uid)
	}
	be.ExpireAccessToken(tok.AccessToken)
	want401() // passes through, not replayed
	g.SetAuthToken("")
	want401()
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if !reflect.DeepEqual(got, []string{"", tok.AccessToken, tok.AccessToken, ""}) {
		t.Fatalf("server saw %d requests with unexpected bearers", len(got))
	}
	if n := be.Stats().RefreshCalls; n != 0 {
		t.Fatalf("ghost refreshed %d times", n)
	}
}

// Row 18: the auth status stream: the current status on subscribe, one
// value per real transition, none per refresh; a slow subscriber never
// blocks the store.
func TestRefreshRow18_AuthStatusStream(t *testing.T) {
	t.Run("transitions", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		ctx := ctxT(t)
		sub, err := e.p.SubscribeAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		u1 := e.login("u1@example.com")
		u2 := e.login("u2@example.com")
		steps := []func(){
			func() { _ = e.p.SwitchAccount(ctx, u1.UID) },
			func() { _ = e.p.SwitchAccount(ctx, u1.UID) }, // already current: no transition
			func() { // a refresh: no transition
				e.be.ExpireAccessToken(u1.AccessToken)
				if _, err := e.p.Get(ctx, "/echo"); err != nil {
					t.Error(err)
				}
			},
			func() { // a new login of the current account: no transition
				fresh, _ := e.be.IssueTokens(u1.UID)
				e.save(fresh)
			},
			func() { _ = e.p.LogOut(ctx) },
			func() { _ = e.p.SwitchAccount(ctx, u2.UID) },
			func() { // expiry: the refresh token is rejected
				e.be.RevokeRefreshToken(u2.RefreshToken)
				e.be.ExpireAccessToken(u2.AccessToken)
				if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrSessionExpired) {
					t.Errorf("expiry: %v", err)
				}
			},
		}
		for _, s := range steps {
			s()
		}
		u3 := e.login("u3@example.com")
		rowWantCalls(t, e, 2)
		auth := func(uid string) pigeon.AuthStatus { return pigeon.AuthStatus{State: pigeon.Authenticated, UID: uid} }
		none := pigeon.AuthStatus{State: pigeon.Unauthenticated}
		want := []pigeon.AuthStatus{none, auth(u1.UID), auth(u2.UID), auth(u1.UID), none, auth(u2.UID), none, auth(u3.UID)}
		// Every value is delivered before the call that caused it returns.
		var got []pigeon.AuthStatus
		for len(got) <= len(want) {
			select {
			case st := <-sub:
				got = append(got, st)
				continue
			default:
			}
			break
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("statuses\n got %+v\nwant %+v", got, want)
		}
		again, err := e.p.SubscribeAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := recv(t, ctx, again); st != auth(u3.UID) {
			t.Fatalf("a new subscriber first gets %+v, want the current status", st)
		}
	})

	t.Run("slow subscriber", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		ctx := ctxT(t)
		u1 := e.login("u1@example.com")
		u2 := e.login("u2@example.com")
		never, err := e.p.SubscribeAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		readCtx, stopReading := context.WithCancel(ctx)
		defer stopReading()
		reader, err := e.p.SubscribeAuth(readCtx)
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan []pigeon.AuthStatus, 1)
		go func() {
			var all []pigeon.AuthStatus
			for st := range reader {
				all = append(all, st)
			}
			read <- all
		}()
		uids := []string{u1.UID, u2.UID}
		for i := range 100 {
			if err := e.p.SwitchAccount(ctx, uids[i%2]); err != nil {
				t.Fatal(err)
			}
		}
		final := pigeon.AuthStatus{State: pigeon.Authenticated, UID: uids[99%2]}
		stopReading() // the store closes the channel after the last value
		all := recv(t, ctx, read)
		if len(all) == 0 || all[len(all)-1] != final {
			t.Fatalf("reader got %d values, ending %+v; want it to end on %+v", len(all), all[len(all)-1:], final)
		}
		var last pigeon.AuthStatus
		n := 0
		for len(never) > 0 {
			last = <-never
			n++
		}
		if n == 0 || n > 16 || last != final {
			t.Fatalf("unread subscriber holds %d values ending %+v; want at most 16 ending %+v", n, last, final)
		}
	})
}

// rowLogSink is a zap sink tests can read.
type rowLogSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *rowLogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *rowLogSink) Sync() error { return nil }

func (s *rowLogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Row 19: no token, refresh token, key or Authorization value appears in
// any log line (pigeon, its actors, badger), error string or %v/%+v/%#v
// output, nor in slog or zap fields.
func TestRefreshRow19_NoSecretsInLogsErrorsOrPrints(t *testing.T) {
	key := []byte("secret-store-key-0123456789abcde")
	logs := &rowLogSink{}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), logs, zapcore.DebugLevel))
	answers := &rowRefreshAnswers{}
	var mode atomic.Int32 // 0 pass, 1 answer 503
	f := &rowForbidden{}
	e := newEnv(t, envConfig{
		storeDir: t.TempDir(),
		key:      key,
		wrap:     rowChain(answers.wrap, f.wrap),
		pigeon:   []pigeon.Option{pigeon.WithLogger(logger)},
		backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
			if mode.Load() == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		})},
	})
	ctx := ctxT(t)
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var printed []string
	show := func(vs ...any) {
		for _, v := range vs {
			printed = append(printed, fmt.Sprintf("%v|%+v|%#v|%s|%q|%x", v, v, v, v, v, v))
		}
	}

	u1 := e.login("u1@example.com")
	_, err := e.p.Get(ctx, "/echo")
	note(err)
	e.be.ExpireAccessToken(u1.AccessToken)
	_, err = e.p.Get(ctx, "/echo") // refresh
	note(err)
	mode.Store(1)
	e.be.ExpireAccessToken(string(rowCurrent(t, ctx, e.p).AccessToken))
	_, err = e.p.Get(ctx, "/echo") // transient failure
	if !errors.Is(err, pigeon.ErrRefreshUnavailable) {
		t.Fatalf("transient failure: %v", err)
	}
	note(err)
	mode.Store(0)
	e.clock.Advance(2 * time.Second)
	_, err = e.p.Get(ctx, "/echo") // refresh after the backoff
	note(err)
	_, err = e.p.Get(ctx, "/forbidden") // refused replay: *StatusError
	note(err)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/forbidden", struct{ io.Reader }{strings.NewReader("x")})
	resp, err := e.p.HTTPClient().Do(req) // not replayable
	if resp != nil {
		resp.Body.Close()
	}
	note(err)
	u2 := e.login("u2@example.com")
	note(e.p.SwitchAccount(ctx, u1.UID))
	all, err := e.p.AllAuths(ctx)
	note(err)
	for _, rec := range all {
		show(rec, &rec, rec.AccessToken, rec.RefreshToken)
	}
	cur := rowCurrent(t, ctx, e.p)
	show(cur, []pigeon.AuthRecord{cur}, pigeon.Secret(u1.AccessToken))
	var slogged bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&slogged, nil), slog.NewTextHandler(&slogged, nil)} {
		slog.New(h).Info("record", "rec", cur, "ptr", &cur, "tok", cur.AccessToken, "all", all)
	}
	logger.Info("fields", zap.Any("rec", cur), zap.Any("ptr", &cur), zap.Any("tok", cur.AccessToken),
		zap.Stringer("str", cur.RefreshToken), zap.Reflect("all", all), zap.Any("all2", all))
	e.be.RevokeRefreshToken(string(cur.RefreshToken))
	e.be.ExpireAccessToken(string(cur.AccessToken))
	_, err = e.p.Get(ctx, "/echo") // rejected: session expired
	if !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("rejection: %v", err)
	}
	note(err)
	note(e.p.SwitchAccount(ctx, u2.UID))
	note(e.p.LogOut(ctx))
	_, err = e.p.CurrentAuth(ctx)
	note(err)
	_, err = e.p.Get(ctx, "/echo") // signed out: a plain 401
	note(err)
	note(e.p.Close())
	for _, err := range errs {
		show(err)
		printed = append(printed, err.Error())
	}

	secrets := append([]string{u1.AccessToken, u1.RefreshToken, u2.AccessToken, u2.RefreshToken}, answers.all()...)
	secrets = append(secrets, string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key))
	if n := len(answers.all()); n < 4 {
		t.Fatalf("expected at least 2 successful refreshes, saw %d tokens", n)
	}
	logText := logs.String()
	// badger logs only at Warn and above, nothing on a healthy run: its
	// lines cannot be required here.
	for _, want := range []string{"refresh failed", "refresh rejected", `"[REDACTED]"`} {
		if !strings.Contains(logText, want) {
			t.Errorf("log lacks %q: the scan would prove nothing", want)
		}
	}
	outputs := map[string]string{"log": logText, "slog": slogged.String(), "fmt": strings.Join(printed, "\n")}
	for name, out := range outputs {
		for i, s := range secrets {
			if s != "" && strings.Contains(out, s) {
				t.Errorf("%s output contains secret #%d", name, i)
			}
		}
	}
	if len(errs) < 6 {
		t.Fatalf("only %d errors collected", len(errs))
	}
}

// Row 20: Authorization is not forwarded to another host on a redirect;
// bearer tokens are refused over plain http to non-loopback hosts unless
// WithInsecureHTTP.
func TestRefreshRow20_RedirectsAndPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noBaseURL bool
	}{{"with base URL", false}, {"absolute URLs", true}} {
		t.Run("cross-host redirect/"+tc.name, func(t *testing.T) {
			var otherAuth []string
			var mu sync.Mutex
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				otherAuth = append(otherAuth, r.Header.Get("Authorization"))
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"data":{}}`)
			}))
			t.Cleanup(func() { other.CloseClientConnections(); other.Close() })
			_, port, _ := net.SplitHostPort(other.Listener.Addr().String())
			otherURL := "http://localhost:" + port + "/landing" // another host name, still loopback
			var redirAuth rowString
			e := newEnv(t, envConfig{noBaseURL: tc.noBaseURL, wrap: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch r.URL.Path {
					case "/away":
						redirAuth.Store(r.Header.Get("Authorization"))
						http.Redirect(w, r, otherURL, http.StatusFound)
					case "/here":
						http.Redirect(w, r, "/echo", http.StatusFound)
					default:
						next.ServeHTTP(w, r)
					}
				})
			}})
			tok := e.login("a@example.com")
			ctx := ctxT(t)
			base := ""
			if tc.noBaseURL {
				base = e.srv.URL
			}
			if _, err := e.p.Get(ctx, base+"/away"); err != nil {
				t.Fatal(err)
			}
			if redirAuth.Load() != "Bearer "+tok.AccessToken {
				t.Fatal("the first hop did not carry the bearer")
			}
			mu.Lock()
			got := append([]string(nil), otherAuth...)
			mu.Unlock()
			if !reflect.DeepEqual(got, []string{""}) {
				t.Fatalf("the other host saw %d requests, with Authorization %v", len(got), got[0] != "")
			}
			// A redirect on the same host keeps it.
			r, err := e.p.Get(ctx, base+"/here")
			if err != nil {
				t.Fatal(err)
			}
			if uid := rowUID(t, r); uid != tok.UID {
				t.Fatalf("same-host redirect answered for %q", uid)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		opts  []pigeon.Option
		allow bool
	}{
		{"plain http to a non-loopback host is refused", nil, false},
		{"WithInsecureHTTP allows it", []pigeon.Option{pigeon.WithInsecureHTTP()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvAddr rowString
			tr := testTransport(t, 10)
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, srvAddr.Load())
			}
			opts := append([]pigeon.Option{
				pigeon.WithBaseURL("http://api.example.com"),
				pigeon.WithHTTPClient(&http.Client{Transport: tr}),
			}, tc.opts...)
			e := newEnv(t, envConfig{pigeon: opts})
			srvAddr.Store(e.srv.Listener.Addr().String())
			tok := e.login("a@example.com")
			_, err := e.p.Get(ctxT(t), "/echo")
			seen := e.seenTokens()
			if tc.allow {
				if err != nil || !reflect.DeepEqual(seen, []string{tok.AccessToken}) {
					t.Fatalf("Get: %v; server saw %d requests", err, len(seen))
				}
				return
			}
			if !errors.Is(err, transport.ErrInsecureBearer) || len(seen) != 0 {
				t.Fatalf("Get: %v, server saw %d requests; want ErrInsecureBearer and nothing sent", err, len(seen))
			}
			if strings.Contains(err.Error(), tok.AccessToken) {
				t.Fatal("the error names the token")
			}
		})
	}
}

// rowMisbehaving is a RefreshTokenManager that panics or never returns until
// it is told to behave.
type rowMisbehaving struct {
	mode    *atomic.Int32 // 0 behave, 1 panic, 2 hang
	release chan struct{}
}

func (m rowMisbehaving) ShouldRefresh(r *http.Response) bool {
	return r.StatusCode == http.StatusUnauthorized
}

func (m rowMisbehaving) RefreshToken(ctx context.Context, rt string, c *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	switch m.mode.Load() {
	case 1:
		panic("refresher exploded")
	case 2:
		<-m.release // ignores ctx on purpose
		return pigeon.RefreshTokenResponse{}, errors.New("released")
	}
	return pigeon.JSONRefresher{}.RefreshToken(ctx, rt, c)
}

// Row 22: a RefreshTokenManager that panics or never returns: the
// coordinator survives, waiters fail with ErrRefreshUnavailable, and the
// next 401 can refresh again.
func TestRefreshRow22_RefresherPanicsOrHangs(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"panic", 1}, {"hang", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			mode := &atomic.Int32{}
			mode.Store(tc.mode)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			e := newEnv(t, envConfig{
				refresher: rowMisbehaving{mode: mode, release: release},
				// Short, but room for the good refresh that follows.
				pigeon: []pigeon.Option{pigeon.WithRefreshTimeout(250 * time.Millisecond)},
			})
			tok := e.login("a@example.com")
			e.be.ExpireAccessToken(tok.AccessToken)
			ctx := ctxT(t)
			var waiters []<-chan rowResult
			for range 3 {
				waiters = append(waiters, rowGo(ctx, e.p, "/echo"))
			}
			for i, w := range waiters {
				if res := recv(t, ctx, w); !errors.Is(res.err, pigeon.ErrRefreshUnavailable) {
					t.Fatalf("waiter %d: %v, want ErrRefreshUnavailable", i, res.err)
				}
			}
			if cur := rowCurrent(t, ctx, e.p); string(cur.AccessToken) != tok.AccessToken {
				t.Fatal("tokens not kept")
			}
			rowWantCalls(t, e, 0)
			mode.Store(0)
			e.clock.Advance(2 * time.Second) // past the backoff
			r, err := e.p.Get(ctx, "/echo")
			if err != nil {
				t.Fatalf("next 401 after the failure: %v", err)
			}
			if uid := rowUID(t, r); uid != tok.UID {
				t.Fatalf("answered for %q", uid)
			}
			rowWantCalls(t, e, 1)
		})
	}
}

// Row 23: Close with requests queued: each gets ErrClosed; no goroutine
// remains (goleak in TestMain).
func TestRefreshRow23_CloseWithRequestsQueued(t *testing.T) {
	const n = 5
	g := newGate()
	orig := newRowOriginals(n)
	e := newEnv(t, envConfig{wrap: orig.wrap, backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	tok := e.login("a@example.com")
	orig.token.Store(tok.AccessToken)
	e.be.ExpireAccessToken(tok.AccessToken)
	ctx := ctxT(t)
	var queued []<-chan rowResult
	for range n {
		queued = append(queued, rowGo(ctx, e.p, "/echo"))
	}
	orig.awaitAnswered(t, ctx, n)
	recv(t, ctx, g.entered)
	sub, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, q := range queued {
		if res := recv(t, ctx, q); !errors.Is(res.err, pigeon.ErrClosed) {
			t.Fatalf("queued request %d: %v, want ErrClosed", i, res.err)
		}
	}
	if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("CurrentAuth after Close: %v", err)
	}
	if err := e.p.Close(); err != nil && !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	for open := true; open; { // the stream is closed by Close
		select {
		case _, open = <-sub:
		case <-ctx.Done():
			t.Fatal("auth stream not closed by Close")
		}
	}
	if e.refreshCalls() != 1 {
		t.Fatalf("refresh calls %d", e.refreshCalls())
	}
}
