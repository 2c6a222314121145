package pigeon_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/transport"
)

// fastRetry retries with waits of at most a millisecond, so no test waits
// for a real back-off.
var fastRetry = pigeon.RetryPolicy{MaxAttempts: 3, MinDelay: time.Microsecond, MaxDelay: time.Millisecond}

// flaky answers the first fail requests to path itself with status (and
// Retry-After when set) and passes later ones to the backend; every
// request to path is counted and its body recorded.
type flaky struct {
	path       string
	fail       int
	status     int
	retryAfter string
	// answer, when set, answers the requests that get through instead of
	// the backend.
	answer func(w http.ResponseWriter, r *http.Request)

	mu     sync.Mutex
	bodies []string
}

func newFlaky(path string, fail, status int) *flaky {
	return &flaky{path: path, fail: fail, status: status}
}

func (f *flaky) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != f.path {
			next.ServeHTTP(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		n := len(f.bodies)
		f.mu.Unlock()
		switch {
		case n <= f.fail:
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			w.WriteHeader(f.status)
			_, _ = io.WriteString(w, `{"error":"busy"}`)
		case f.answer != nil:
			f.answer(w, r)
		default:
			r.Body = io.NopCloser(strings.NewReader(string(b)))
			next.ServeHTTP(w, r)
		}
	})
}

func (f *flaky) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

// retryEnv is an env whose client retries with p, /echo failing as f says.
func retryEnv(t *testing.T, f *flaky, p pigeon.RetryPolicy, backendOpts ...backend.Option) *env {
	e := newEnv(t, envConfig{wrap: f.wrap, backend: backendOpts, pigeon: []pigeon.Option{pigeon.WithRetry(p)}})
	e.login("retry@example.com")
	return e
}

func TestRetry_GetRetries503ThenSucceeds(t *testing.T) {
	f := newFlaky("/echo", 2, http.StatusServiceUnavailable)
	e := retryEnv(t, f, fastRetry)
	r, err := e.p.Get(ctxT(t), "/echo")
	if err != nil || r.StatusCode != 200 || len(f.seen()) != 3 {
		t.Fatalf("got %v, %v after %d hits; want 200 after 3", r, err, len(f.seen()))
	}
}

func TestRetry_PostNeverRetried(t *testing.T) {
	f := newFlaky("/echo", 1, http.StatusServiceUnavailable)
	e := retryEnv(t, f, fastRetry)
	_, err := e.p.Post(ctxT(t), "/echo", map[string]int{"n": 1})
	var se *pigeon.StatusError
	if !errors.As(err, &se) || se.Response.StatusCode != http.StatusServiceUnavailable || len(f.seen()) != 1 {
		t.Fatalf("err = %v after %d hits; want the 503 after 1", err, len(f.seen()))
	}
}

func TestRetry_PostWithIdempotencyKeyResendsSameBody(t *testing.T) {
	f := newFlaky("/echo", 1, http.StatusBadGateway)
	e := retryEnv(t, f, fastRetry)
	r, err := e.p.Post(ctxT(t), "/echo", map[string]int{"n": 1}, pigeon.WithHeader("Idempotency-Key", "order-1"))
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("got %v, %v", r, err)
	}
	if got := strings.Join(f.seen(), "|"); got != `{"n":1}|{"n":1}` {
		t.Fatalf("server saw %q, want the same body twice", got)
	}
}

func TestRetry_RetryAfterSecondsAndDateCapped(t *testing.T) {
	for _, c := range []struct {
		name  string
		value func(e *env) string
	}{
		{"seconds", func(*env) string { return "3600" }},
		{"date", func(e *env) string { return e.clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFlaky("/echo", 2, http.StatusTooManyRequests)
			e := retryEnv(t, f, fastRetry) // MaxDelay 1ms caps the hour
			f.retryAfter = c.value(e)
			r, err := e.p.Get(ctxT(t), "/echo")
			if err != nil || r.StatusCode != 200 || len(f.seen()) != 3 {
				t.Fatalf("got %v, %v after %d hits; want 200 after 3", r, err, len(f.seen()))
			}
		})
	}
}

// hijackFirst closes the connection of the first request to path without
// answering; later ones get through.
func hijackFirst(path string, hits *int, mu *sync.Mutex) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path {
				mu.Lock()
				*hits++
				first := *hits == 1
				mu.Unlock()
				if first {
					if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
						_ = conn.Close()
					}
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestRetry_TransportErrorBeforeResponseRetried(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	e := newEnv(t, envConfig{wrap: hijackFirst("/echo", &hits, &mu), pigeon: []pigeon.Option{pigeon.WithRetry(fastRetry)}})
	e.login("retry@example.com")
	r, err := e.p.Get(ctxT(t), "/echo")
	mu.Lock()
	defer mu.Unlock()
	if err != nil || r.StatusCode != 200 || hits != 2 {
		t.Fatalf("got %v, %v after %d hits; want 200 after 2", r, err, hits)
	}
}

func TestRetry_ErrorAfterHeadersNotRetried(t *testing.T) {
	f := newFlaky("/echo", 0, 0)
	f.answer = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		if conn, _, err := rc.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	e := retryEnv(t, f, fastRetry)
	_, err := e.p.Get(ctxT(t), "/echo")
	if err == nil || len(f.seen()) != 1 {
		t.Fatalf("err = %v after %d hits; want a read error after 1", err, len(f.seen()))
	}
}

func TestRetry_401InsideRetryRefreshesOnceNotAnAttempt(t *testing.T) {
	f := newFlaky("/echo", 1, http.StatusServiceUnavailable)
	p := fastRetry
	p.MaxAttempts = 2
	e := retryEnv(t, f, p)
	tok, _ := e.p.CurrentAuth(ctxT(t))
	e.be.ExpireAccessToken(string(tok.AccessToken))
	r, err := e.p.Get(ctxT(t), "/echo")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("got %v, %v", r, err)
	}
	stats := e.p.HTTPClient().Transport.(*transport.Retry).Stats()
	if len(f.seen()) != 3 || e.refreshCalls() != 1 || stats.Retries != 1 {
		t.Fatalf("%d hits, %d refreshes, %d retries; want 3 (503, 401, replay), 1, 1", len(f.seen()), e.refreshCalls(), stats.Retries)
	}
}

func TestRetry_ExhaustedReturnsLastStatus(t *testing.T) {
	f := newFlaky("/echo", 100, http.StatusGatewayTimeout)
	e := retryEnv(t, f, fastRetry)
	r, err := e.p.Get(ctxT(t), "/echo")
	var se *pigeon.StatusError
	if !errors.As(err, &se) || r == nil || r.StatusCode != http.StatusGatewayTimeout || len(f.seen()) != 3 {
		t.Fatalf("got %v, %v after %d hits; want the third 504", r, err, len(f.seen()))
	}
	if s := e.p.HTTPClient().Transport.(*transport.Retry).Stats(); s.Exhausted != 1 || s.Retries != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// The request's GetBody, which the retry layer calls once it has decided
// to resend (after the answer, before the back-off), cancels the context:
// the hour-long back-off the server asked for ends at once.
func TestRetry_CancelDuringBackoffReturnsCtxErr(t *testing.T) {
	f := newFlaky("/flaky", 100, http.StatusServiceUnavailable)
	f.retryAfter = "3600"
	e := retryEnv(t, f, pigeon.RetryPolicy{MaxAttempts: 3, MinDelay: time.Hour, MaxDelay: time.Hour})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, e.srv.URL+"/flaky", strings.NewReader("x"))
	req.GetBody = func() (io.ReadCloser, error) {
		cancel()
		return io.NopCloser(strings.NewReader("x")), nil
	}
	resp, err := e.p.HTTPClient().Do(req)
	if resp != nil || !errors.Is(err, context.Canceled) || len(f.seen()) != 1 {
		t.Fatalf("got %v, %v after %d hits; want context.Canceled after 1", resp, err, len(f.seen()))
	}
}

func TestRetry_HTTPClientSamePolicy(t *testing.T) {
	for _, c := range []struct {
		name, method, key string
		body              io.Reader
		hits              int
	}{
		{"OPTIONS", http.MethodOptions, "", nil, 3},
		{"HEAD", http.MethodHead, "", nil, 3},
		{"DELETE", http.MethodDelete, "", nil, 3},
		{"PUT replayable", http.MethodPut, "", strings.NewReader("x"), 3},
		{"PUT not replayable", http.MethodPut, "", io.MultiReader(strings.NewReader("x")), 1},
		{"PATCH", http.MethodPatch, "", strings.NewReader("x"), 1},
		{"PATCH with key", http.MethodPatch, "k", strings.NewReader("x"), 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFlaky("/flaky", 100, http.StatusServiceUnavailable)
			e := retryEnv(t, f, fastRetry)
			req, _ := http.NewRequestWithContext(ctxT(t), c.method, e.srv.URL+"/flaky", c.body)
			if c.key != "" {
				req.Header.Set("Idempotency-Key", c.key)
			}
			resp, err := e.p.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || len(f.seen()) != c.hits {
				t.Fatalf("status %d after %d hits, want 503 after %d", resp.StatusCode, len(f.seen()), c.hits)
			}
		})
	}
}

func TestRetry_Ghost(t *testing.T) {
	f := newFlaky("/public/echo", 2, http.StatusServiceUnavailable)
	e := newEnv(t, envConfig{wrap: f.wrap})
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(e.srv.URL), pigeon.WithRetry(fastRetry))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r, err := g.Get(ctxT(t), "/public/echo")
	if err != nil || r.StatusCode != 200 || len(f.seen()) != 3 {
		t.Fatalf("got %v, %v after %d hits; want 200 after 3", r, err, len(f.seen()))
	}
}

func TestRetry_BadPolicyIsABuildError(t *testing.T) {
	for _, c := range []struct {
		p    pigeon.RetryPolicy
		want string
	}{
		{pigeon.RetryPolicy{MaxAttempts: -1}, "pigeon: WithRetry: MaxAttempts -1 is negative"},
		{pigeon.RetryPolicy{MinDelay: -time.Second}, "pigeon: WithRetry: MinDelay -1s is negative"},
		{pigeon.RetryPolicy{MinDelay: time.Minute, MaxDelay: time.Second}, "pigeon: WithRetry: MinDelay 1m0s exceeds MaxDelay 1s"},
	} {
		_, aerr := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore(), pigeon.WithRetry(c.p))
		_, gerr := pigeon.NewGhost(pigeon.WithRetry(c.p))
		if errString(aerr) != c.want || errString(gerr) != c.want {
			t.Errorf("%+v: NewAuthorized %v, NewGhost %v; want %q", c.p, aerr, gerr, c.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestTimeout_CoversRetriesAndRefreshWait(t *testing.T) {
	g := newGate()
	t.Cleanup(g.Open)
	f := newFlaky("/echo", 1, http.StatusServiceUnavailable)
	e := retryEnv(t, f, fastRetry, backend.WithRefreshHook(g.hook))
	tok, _ := e.p.CurrentAuth(ctxT(t))
	e.be.ExpireAccessToken(string(tok.AccessToken))
	_, err := e.p.Get(ctxT(t), "/echo", pigeon.WithTimeout(3*time.Second))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "WithTimeout budget of 3s") {
		t.Fatalf("err = %v, want the 3s budget's DeadlineExceeded", err)
	}
	if len(f.seen()) != 2 || len(g.entered) != 1 {
		t.Fatalf("%d hits, %d refreshes reached; want the 503, the 401 and the refresh it waited for", len(f.seen()), len(g.entered))
	}
}

func TestTimeout_BoundsBodyRead(t *testing.T) {
	headers := make(chan struct{}, 1)
	f := newFlaky("/echo", 0, 0)
	f.answer = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"partial":`)
		_ = http.NewResponseController(w).Flush()
		headers <- struct{}{}
		<-r.Context().Done() // the body never ends
	}
	e := retryEnv(t, f, fastRetry)
	_, err := e.p.Get(ctxT(t), "/echo", pigeon.WithTimeout(2*time.Second))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "WithTimeout budget of 2s") {
		t.Fatalf("err = %v, want the 2s budget's DeadlineExceeded", err)
	}
	if len(headers) != 1 {
		t.Fatal("the answer's headers never went out: the budget ended before the body read")
	}
}

func TestTimeout_NotPositiveIsAnError(t *testing.T) {
	f := newFlaky("/echo", 0, 0)
	e := retryEnv(t, f, fastRetry)
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := e.p.Get(ctxT(t), "/echo", pigeon.WithTimeout(d))
		if err == nil || !strings.Contains(err.Error(), "pigeon: WithTimeout: "+d.String()+" is not positive") {
			t.Errorf("WithTimeout(%v): err = %v", d, err)
		}
	}
	if len(f.seen()) != 0 {
		t.Fatalf("%d requests sent, want none", len(f.seen()))
	}
}

// The call to the refresh endpoint has its own policy (the coordinator's
// back-off, docs/refresh.md row 5): a 503 from it is not retried, and the
// request that waited for it fails with ErrRefreshUnavailable, not retried
// either.
func TestRetry_RefreshCallNotRetried(t *testing.T) {
	refresh := newFlaky("/auth/refresh", 100, http.StatusServiceUnavailable)
	echo := newFlaky("/echo", 0, 0)
	e := newEnv(t, envConfig{wrap: func(next http.Handler) http.Handler { return refresh.wrap(echo.wrap(next)) },
		pigeon: []pigeon.Option{pigeon.WithRetry(fastRetry)}})
	tok := e.login("retry@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	_, err := e.p.Get(ctxT(t), "/echo")
	if !errors.Is(err, pigeon.ErrRefreshUnavailable) || len(refresh.seen()) != 1 || len(echo.seen()) != 1 {
		t.Fatalf("err = %v after %d refresh calls and %d requests; want ErrRefreshUnavailable after 1 and 1", err, len(refresh.seen()), len(echo.seen()))
	}
}

func TestRetry_AbsentNeverResends(t *testing.T) {
	f := newFlaky("/echo", 1, http.StatusServiceUnavailable)
	e := newEnv(t, envConfig{wrap: f.wrap})
	e.login("retry@example.com")
	_, err := e.p.Get(ctxT(t), "/echo")
	if _, ok := e.p.HTTPClient().Transport.(*transport.Retry); ok || err == nil || len(f.seen()) != 1 {
		t.Fatalf("err = %v after %d hits (retry layer present: %v); want the 503 after 1", err, len(f.seen()), ok)
	}
}

// Fifty callers race their retries against one refresh: the first fifty
// requests get 503, the later ones meet an expired token. Every caller
// ends with 200 and the server sees exactly one refresh.
func TestStress_RetriesDuring401Storm(t *testing.T) {
	const callers = 50
	f := newFlaky("/echo", callers, http.StatusServiceUnavailable)
	p := fastRetry
	p.MaxAttempts = callers + 2 // a caller can meet every one of the 503s
	e := retryEnv(t, f, p)
	tok, _ := e.p.CurrentAuth(ctxT(t))
	e.be.ExpireAccessToken(string(tok.AccessToken))
	ctx := ctxT(t)
	errs := make(chan error, callers) // each caller sends once and ends
	for range callers {
		go func() {
			_, err := e.p.Get(ctx, "/echo")
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if e.refreshCalls() != 1 {
		t.Fatalf("%d refreshes, want 1", e.refreshCalls())
	}
}
