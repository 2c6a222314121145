package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// hitServer answers each request with answer(n, w, r), n counting from 1,
// and records the request bodies.
type hitServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newHitServer(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *hitServer {
	s := &hitServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		n := len(s.bodies)
		s.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hitServer) hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func (s *hitServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// failFirst answers status to the first n requests, then 200 "ok".
func failFirst(n, status int) func(int, http.ResponseWriter, *http.Request) {
	return func(hit int, w http.ResponseWriter, _ *http.Request) {
		if hit <= n {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "busy "+strconv.Itoa(hit))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
}

// waits records every back-off a Retry asks for and returns at once.
type waits struct {
	mu sync.Mutex
	ds []time.Duration
}

func (w *waits) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.ds = append(w.ds, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) got() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.ds...)
}

// newRetry returns a Retry over a private network transport that never
// really waits.
func newRetry(t *testing.T, base http.RoundTripper, p RetryPolicy) (*Retry, *waits) {
	net := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(net.CloseIdleConnections)
	if base == nil {
		base = net
	} else if tr, ok := base.(*Transport); ok {
		tr.Base = net
	}
	w := &waits{}
	return &Retry{Base: base, Policy: p, Wait: w.wait}, w
}

func send(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestRetry_MethodClasses(t *testing.T) {
	for _, c := range []struct {
		method, key string
		hits        int
	}{
		{http.MethodGet, "", 3},
		{http.MethodHead, "", 3},
		{http.MethodOptions, "", 3},
		{http.MethodPut, "", 3},
		{http.MethodDelete, "", 3},
		{http.MethodPost, "", 1},
		{http.MethodPatch, "", 1},
		{http.MethodPost, "k-1", 3},
		{http.MethodPatch, "k-2", 3},
	} {
		t.Run(c.method+"/"+c.key, func(t *testing.T) {
			srv := newHitServer(t, failFirst(100, http.StatusServiceUnavailable))
			r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3})
			req, _ := http.NewRequest(c.method, srv.URL, strings.NewReader("body"))
			if c.key != "" {
				req.Header.Set("Idempotency-Key", c.key)
			}
			resp, _ := send(t, r, req)
			if resp.StatusCode != http.StatusServiceUnavailable || srv.hits() != c.hits {
				t.Fatalf("status %d after %d hits, want 503 after %d", resp.StatusCode, srv.hits(), c.hits)
			}
		})
	}
}

func TestRetry_RetriedStatuses(t *testing.T) {
	for _, c := range []struct {
		status, hits int
	}{
		{http.StatusTooManyRequests, 2},
		{http.StatusBadGateway, 2},
		{http.StatusServiceUnavailable, 2},
		{http.StatusGatewayTimeout, 2},
		{http.StatusInternalServerError, 1},
		{http.StatusNotImplemented, 1},
		{http.StatusBadRequest, 1},
		{http.StatusConflict, 1},
	} {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			srv := newHitServer(t, failFirst(1, c.status))
			r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 5})
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			send(t, r, req)
			if srv.hits() != c.hits {
				t.Fatalf("%d hits, want %d", srv.hits(), c.hits)
			}
		})
	}
}

func TestRetry_IdempotencyKeyResendsSameBody(t *testing.T) {
	srv := newHitServer(t, failFirst(1, http.StatusServiceUnavailable))
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte(`{"n":1}`)))
	req.Header.Set("Idempotency-Key", "order-7")
	resp, body := send(t, r, req)
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := strings.Join(srv.seen(), "|"); got != `{"n":1}|{"n":1}` {
		t.Fatalf("server saw bodies %q", got)
	}
}

// onceReader is a body net/http cannot read twice (no GetBody).
type onceReader struct{ r io.Reader }

func (o *onceReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestRetry_BodyWithoutGetBodyNotResent(t *testing.T) {
	srv := newHitServer(t, failFirst(1, http.StatusServiceUnavailable))
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodPut, srv.URL, &onceReader{strings.NewReader("once")})
	resp, body := send(t, r, req)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "busy 1" || srv.hits() != 1 {
		t.Fatalf("got %d %q after %d hits; want the first answer as is", resp.StatusCode, body, srv.hits())
	}
}

func TestRetry_RetryAfterHonouredAndCapped(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		name, header string
		max          time.Duration
		want         time.Duration
	}{
		{"seconds", "2", time.Hour, 2 * time.Second},
		{"seconds capped", "7200", time.Minute, time.Minute},
		{"huge seconds capped", "99999999999999999999", time.Minute, time.Minute},
		{"date", now.Add(30 * time.Second).Format(http.TimeFormat), time.Hour, 30 * time.Second},
		{"date capped", now.Add(time.Hour).Format(http.TimeFormat), 5 * time.Second, 5 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), time.Hour, 0},
		{"negative ignored: jitter", "-5", time.Hour, time.Second - 1},
		{"garbage ignored: jitter", "soon", time.Hour, time.Second - 1},
		{"absent: jitter", "", time.Hour, time.Second - 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newHitServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					if c.header != "" {
						w.Header().Set("Retry-After", c.header)
					}
					w.WriteHeader(http.StatusTooManyRequests)
				}
			})
			r, w := newRetry(t, nil, RetryPolicy{MaxAttempts: 2, MinDelay: time.Second, MaxDelay: c.max})
			r.Now = func() time.Time { return now }
			r.Rand = func(n int64) int64 { return n - 1 }
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, _ := send(t, r, req)
			if got := w.got(); resp.StatusCode != 200 || len(got) != 1 || got[0] != c.want {
				t.Fatalf("status %d, waits %v; want 200 after one wait of %v", resp.StatusCode, got, c.want)
			}
		})
	}
}

func TestRetry_FullJitterCeilings(t *testing.T) {
	srv := newHitServer(t, failFirst(100, http.StatusBadGateway))
	r, w := newRetry(t, nil, RetryPolicy{MaxAttempts: 6, MinDelay: time.Second, MaxDelay: 5 * time.Second})
	var ceilings []time.Duration
	r.Rand = func(n int64) int64 { ceilings = append(ceilings, time.Duration(n)); return n / 2 }
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	send(t, r, req)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(ceilings, want) {
		t.Fatalf("jitter ceilings %v, want %v", ceilings, want)
	}
	if got := w.got(); !slices.Equal(got, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 2500 * time.Millisecond, 2500 * time.Millisecond}) {
		t.Fatalf("waits %v, want half of each ceiling", got)
	}
}

func TestRetry_TransportErrorBeforeResponse(t *testing.T) {
	srv := newHitServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // no answer at all
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, body := send(t, r, req)
	if resp.StatusCode != 200 || body != "ok" || srv.hits() != 2 {
		t.Fatalf("got %d %q after %d hits, want 200 ok after 2", resp.StatusCode, body, srv.hits())
	}
	if s := r.Stats(); s.Retries != 1 || s.Exhausted != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRetry_RefusedPortGivesUpWithAttempts(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	r, w := newRetry(t, nil, RetryPolicy{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	_, err := r.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err = %v, want one that says 3 attempts", err)
	}
	if s := r.Stats(); len(w.got()) != 2 || s.Retries != 2 || s.Exhausted != 1 {
		t.Fatalf("waits %v, stats %+v; want 2 waits, 2 retries, 1 exhausted", w.got(), s)
	}
}

func TestRetry_ExhaustedReturnsLastResponse(t *testing.T) {
	srv := newHitServer(t, failFirst(100, http.StatusServiceUnavailable))
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 4})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, body := send(t, r, req)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "busy 4" || srv.hits() != 4 {
		t.Fatalf("got %d %q after %d hits, want the 4th answer", resp.StatusCode, body, srv.hits())
	}
	if s := r.Stats(); s.Retries != 3 || s.Exhausted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// backoffSignal returns a Rand that reports the first back-off on ch and
// asks for the longest wait.
func backoffSignal(ch chan<- struct{}) func(int64) int64 {
	var once sync.Once
	return func(n int64) int64 {
		once.Do(func() { close(ch) })
		return n - 1
	}
}

func TestRetry_CancelDuringBackoff(t *testing.T) {
	srv := newHitServer(t, failFirst(100, http.StatusServiceUnavailable))
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3, MinDelay: time.Hour, MaxDelay: time.Hour})
	r.Wait = nil // the real timer
	inBackoff := make(chan struct{})
	r.Rand = backoffSignal(inBackoff)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	go func() { <-inBackoff; cancel() }()
	resp, err := r.RoundTrip(req)
	if resp != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, %v; want ctx.Err()", resp, err)
	}
	if srv.hits() != 1 {
		t.Fatalf("%d hits, want 1", srv.hits())
	}
}

func TestRetry_LifeEndsBackoff(t *testing.T) {
	srv := newHitServer(t, failFirst(100, http.StatusServiceUnavailable))
	life, end := context.WithCancelCause(context.Background())
	defer end(nil)
	r, _ := newRetry(t, nil, RetryPolicy{MaxAttempts: 3, MinDelay: time.Hour, MaxDelay: time.Hour})
	r.Wait, r.Life = nil, life
	inBackoff := make(chan struct{})
	r.Rand = backoffSignal(inBackoff)
	go func() { <-inBackoff; end(messages.ErrClosed) }()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if _, err := r.RoundTrip(req); !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestRetry_AuthReplayIsNotAnAttempt(t *testing.T) {
	srv := newHitServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case n == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Header.Get("Authorization") != "Bearer T2":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	tok := newTokens()
	r, _ := newRetry(t, &Transport{Tokens: tok}, RetryPolicy{MaxAttempts: 2})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, body := send(t, r, req)
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if srv.hits() != 3 || tok.reports.Load() != 1 || r.Stats().Retries != 1 {
		t.Fatalf("%d hits, %d refreshes, %d retries; want 3, 1, 1", srv.hits(), tok.reports.Load(), r.Stats().Retries)
	}
}

func TestRetry_AuthDecisionsNotRetried(t *testing.T) {
	srv := newHitServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	tok := newTokens()
	tok.failWith = messages.ErrRefreshUnavailable
	r, _ := newRetry(t, &Transport{Tokens: tok}, RetryPolicy{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	_, err := r.RoundTrip(req)
	var re *ReplayError
	if !errors.As(err, &re) || !errors.Is(err, messages.ErrRefreshUnavailable) || srv.hits() != 1 {
		t.Fatalf("err = %v after %d hits; want the ReplayError after 1", err, srv.hits())
	}
}

func TestRetryPolicy_Validate(t *testing.T) {
	for _, c := range []struct {
		p    RetryPolicy
		want string
	}{
		{RetryPolicy{}, ""},
		{RetryPolicy{MaxAttempts: 5, MinDelay: time.Second, MaxDelay: time.Second}, ""},
		{RetryPolicy{MinDelay: time.Minute}, ""},
		{RetryPolicy{MaxAttempts: -1}, "MaxAttempts -1 is negative"},
		{RetryPolicy{MinDelay: -time.Second}, "MinDelay -1s is negative"},
		{RetryPolicy{MaxDelay: -time.Second}, "MaxDelay -1s is negative"},
		{RetryPolicy{MinDelay: 2 * time.Second, MaxDelay: time.Second}, "MinDelay 2s exceeds MaxDelay 1s"},
	} {
		err := c.p.Validate()
		if got := errString(err); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
