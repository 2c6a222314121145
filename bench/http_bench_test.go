package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/transport"
)

const httpCallers = 64

func tunedTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * httpCallers
	t.MaxIdleConnsPerHost = 2 * httpCallers
	return t
}

// BenchmarkHTTPGet compares 64 concurrent callers doing authenticated GETs
// through the facade with the raw baseline: a plain net/http client, tuned
// for the same concurrency, sending the same bearer to the same loopback
// server.
func BenchmarkHTTPGet(b *testing.B) {
	srv, tok := getServer(b)
	b.Run("baseline=net/http", func(b *testing.B) { benchPlainGet(b, srv.URL, tok) })
	b.Run("pigeon=Get", func(b *testing.B) { benchFacadeGet(b, srv.URL, tok) })
}

// BenchmarkHTTPGetWithRetry is BenchmarkHTTPGet with WithRetry configured
// and no failures: the price of the retry layer on the happy path (the
// facade without it runs too, for the layer's own share).
func BenchmarkHTTPGetWithRetry(b *testing.B) {
	srv, tok := getServer(b)
	b.Run("baseline=net/http", func(b *testing.B) { benchPlainGet(b, srv.URL, tok) })
	b.Run("pigeon=Get", func(b *testing.B) { benchFacadeGet(b, srv.URL, tok) })
	b.Run("pigeon=Get+WithRetry", func(b *testing.B) {
		benchFacadeGet(b, srv.URL, tok, pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 3}))
	})
}

// BenchmarkHTTPGetWithOTel is BenchmarkHTTPGet with WithTracerProvider
// and WithMeterProvider set to OpenTelemetry's no-op providers: the price
// of the telemetry layer itself (goal: throughput >= 0.96 of the raw
// baseline).
func BenchmarkHTTPGetWithOTel(b *testing.B) {
	srv, tok := getServer(b)
	b.Run("baseline=net/http", func(b *testing.B) { benchPlainGet(b, srv.URL, tok) })
	b.Run("pigeon=Get", func(b *testing.B) { benchFacadeGet(b, srv.URL, tok) })
	b.Run("pigeon=Get+noopOTel", func(b *testing.B) {
		benchFacadeGet(b, srv.URL, tok, pigeon.WithTracerProvider(tracenoop.NewTracerProvider()),
			pigeon.WithMeterProvider(metricnoop.NewMeterProvider()))
	})
}

// getServer starts the example backend on loopback, closed when b ends,
// with one user whose tokens it returns.
func getServer(b *testing.B) (*httptest.Server, backend.Tokens) {
	be := backend.New()
	b.Cleanup(be.Close)
	srv := httptest.NewServer(be)
	b.Cleanup(srv.Close)
	tok, err := be.CreateUser("bench@example.com", "pw")
	if err != nil {
		b.Fatal(err)
	}
	return srv, tok
}

// rawGet is the raw baseline's request: a GET of url with bearer through
// c, the body read; false (and b.Error) when it failed.
func rawGet(b *testing.B, c *http.Client, url, bearer string) bool {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Error(err)
		return false
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("status %d", resp.StatusCode)
		return false
	}
	return true
}

// benchPlainGet is the raw baseline: httpCallers callers sending GET /echo
// with tok's bearer through a plain, tuned net/http client.
func benchPlainGet(b *testing.B, base string, tok backend.Tokens) {
	tr := tunedTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.SetParallelism(httpCallers / max(1, runtimeProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !rawGet(b, c, base+"/echo", tok.AccessToken) {
				return
			}
		}
	})
}

// benchFacadeGet is the same load through an AuthorizedPigeon built with
// opts, tok saved as its current account.
func benchFacadeGet(b *testing.B, base string, tok backend.Tokens, opts ...pigeon.Option) {
	tr := tunedTransport()
	defer tr.CloseIdleConnections()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, append([]pigeon.Option{pigeon.WithInMemoryStore(),
		pigeon.WithBaseURL(base), pigeon.WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.SaveNewAuth(context.Background(), pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(httpCallers / max(1, runtimeProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := p.Get(ctx, "/echo"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefreshStorm sends 1000 concurrent requests per variant and
// iteration, the variants taking turns within each iteration (the first
// one rotating) so that a machine whose load changes weighs on all alike:
//
//   - baseline: a valid token;
//   - expired: a token the server has expired (every request gets 401,
//     exactly one refresh runs, all 1000 replay);
//   - floor: each caller sends two requests with a valid token, the floor
//     of a storm, which sends every request twice by definition;
//   - known-expiry: the token saved 5 s from its ExpiresAt (inside the
//     hard window) and already refused by the server: every request waits
//     for the one refresh and goes out once, so no 401 is answered.
//
// Each iteration checks the refresh calls (0 or exactly 1) and, for
// known-expiry, that the server answered no 401. It reports ms/storm per
// variant and the ratios x-expired/floor and x-known-expiry/baseline
// (goals: <= 1.0 and <= 1.1).
func BenchmarkRefreshStorm(b *testing.B) {
	const n = 1000
	be := backend.New()
	defer be.Close()
	srv := httptest.NewServer(be)
	defer srv.Close()
	ctx := context.Background()
	type variant struct {
		name   string
		storm  bool          // the server refuses the saved token
		expiry time.Duration // the saved ExpiresAt from now; 0: unknown
		reqs   int
		p      *pigeon.AuthorizedPigeon
		tok    backend.Tokens
		skew   *atomic.Int64 // how far the client's clock runs ahead
		wall   time.Duration
	}
	vs := []*variant{
		{name: "baseline", reqs: 1},
		{name: "expired", storm: true, reqs: 1},
		{name: "floor", reqs: 2},
		{name: "known-expiry", storm: true, expiry: 5 * time.Second, reqs: 1},
	}
	for _, v := range vs {
		tr := tunedTransport()
		tr.MaxIdleConnsPerHost = n
		tr.MaxIdleConns = n
		defer tr.CloseIdleConnections()
		// The client's clock runs ahead of the server's by skew, so a
		// token it saves as issued now can be 5 s from its expiry.
		skew := &atomic.Int64{}
		now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore(),
			pigeon.WithBaseURL(srv.URL), pigeon.WithHTTPClient(&http.Client{Transport: tr}), pigeon.WithClock(clock.NowFunc(now)))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		tok, err := be.CreateUser("storm-"+v.name+"@example.com", "pw")
		if err != nil {
			b.Fatal(err)
		}
		v.p, v.tok, v.skew = p, tok, skew
	}
	run := func(v *variant) {
		tok, err := be.IssueTokens(v.tok.UID)
		if err != nil {
			b.Fatal(err)
		}
		v.skew.Store(0)
		var exp time.Time
		if v.expiry > 0 {
			exp = tok.ExpiresAt
		}
		if err := v.p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: exp}); err != nil {
			b.Fatal(err)
		}
		if v.expiry > 0 {
			v.skew.Store(int64(time.Until(exp.Add(-v.expiry))))
		}
		if v.storm {
			be.ExpireAccessToken(tok.AccessToken)
		}
		before := be.Stats()
		start := time.Now()
		err = getStorm(ctx, []pigeon.AppPigeon{v.p}, n, v.reqs)
		v.wall += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		after := be.Stats()
		want := int64(0)
		if v.storm {
			want = 1
		}
		if got := after.RefreshCalls - before.RefreshCalls; got != want {
			b.Fatalf("%s: refresh calls = %d, want %d", v.name, got, want)
		}
		if got := after.Unauthorized - before.Unauthorized; v.expiry > 0 && got != 0 {
			b.Fatalf("%d requests answered 401 in the known-expiry storm, want 0", got)
		}
	}
	for _, v := range vs { // warm up: connections open
		run(v)
		v.wall = 0
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range vs {
			run(vs[(i+j)%len(vs)])
		}
	}
	b.StopTimer()
	for _, v := range vs {
		b.ReportMetric(float64(v.wall.Milliseconds())/float64(b.N), "ms/storm-"+v.name)
	}
	b.ReportMetric(float64(vs[1].wall)/float64(vs[2].wall), "x-expired/floor")
	b.ReportMetric(float64(vs[3].wall)/float64(vs[0].wall), "x-known-expiry/baseline")
	b.ReportMetric(float64(vs[1].wall)/float64(vs[0].wall), "x-expired/baseline")
}

// BenchmarkRetryLayer isolates what WithRetry adds to a request that
// succeeds: a RoundTrip through transport.Retry over a RoundTripper that
// answers 200 at once, against that RoundTripper alone. Free of network
// noise, it bounds the layer's share of BenchmarkHTTPGetWithRetry.
func BenchmarkRetryLayer(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/echo", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"baseline=RoundTripper", answer200{}},
		{"pigeon=Retry", &transport.Retry{Base: answer200{}, Policy: transport.RetryPolicy{MaxAttempts: 3}}},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := v.rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
			}
		})
	}
}

// answer200 answers every request 200 with an empty body, without I/O.
type answer200 struct{}

var ok200 = &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}

func (answer200) RoundTrip(*http.Request) (*http.Response, error) { return ok200, nil }

// getStorm starts perClient goroutines per client at once, each sending
// reqs GET /echo through its client, and returns when all are done: nil,
// or the errors they met.
func getStorm(ctx context.Context, clients []pigeon.AppPigeon, perClient, reqs int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*perClient*reqs)
	for _, c := range clients {
		for range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range reqs {
					if _, err := c.Get(ctx, "/echo"); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// BenchmarkHTTPGetInterleaved is BenchmarkHTTPGet's load (64 callers,
// GET /echo with the bearer, the example backend on loopback) with the
// raw baseline and the facade variants taking turns: each iteration sends
// a chunk of interleavedChunk requests through every variant in turn, so
// a machine whose load changes from second to second (other engineers'
// builds) weighs on all of them alike. It reports, per variant, wall and
// process CPU per request over all chunks and the throughput ratio to the
// baseline (thr-x-<variant>: baseline time / variant time, higher is
// better, 1 is parity) and the CPU ratio (cpu-x-<variant>: variant CPU /
// baseline CPU, lower is better). Run it with -benchtime 20x or more.
func BenchmarkHTTPGetInterleaved(b *testing.B) {
	srv, tok := getServer(b)
	facade := func(name string, opts ...pigeon.Option) *ilVariant {
		p, closeP := ilFacade(b, srv.URL, []backend.Tokens{tok}, opts...)
		return &ilVariant{name: name, close: closeP, get: func(ctx context.Context, _ int) error {
			_, err := p.Get(ctx, "/echo")
			return err
		}}
	}
	interleave(b,
		plainVariant(b, srv.URL, func(int) string { return tok.AccessToken }),
		facade("Get"),
		facade("Get+WithRetry", pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 3})),
		facade("Get+noopOTel", pigeon.WithTracerProvider(tracenoop.NewTracerProvider()), pigeon.WithMeterProvider(metricnoop.NewMeterProvider())),
	)
}

// ilVariant is one way of sending GET /echo in an interleaved benchmark:
// get sends one request for caller w (0..httpCallers-1).
type ilVariant struct {
	name      string
	get       func(ctx context.Context, w int) error
	wall, cpu time.Duration
	close     func()
}

// plainVariant is the raw baseline: plain net/http with its own tuned
// transport, caller w sending the bearer token(w).
func plainVariant(b *testing.B, base string, token func(w int) string) *ilVariant {
	tr := tunedTransport()
	c := &http.Client{Transport: tr}
	return &ilVariant{name: "baseline", close: tr.CloseIdleConnections, get: func(_ context.Context, w int) error {
		if !rawGet(b, c, base+"/echo", token(w)) {
			return errRawGet
		}
		return nil
	}}
}

// ilFacade is an AuthorizedPigeon on base with toks saved (the first one
// current) and its own tuned transport; the func closes both.
func ilFacade(b *testing.B, base string, toks []backend.Tokens, opts ...pigeon.Option) (*pigeon.AuthorizedPigeon, func()) {
	b.Helper()
	tr := tunedTransport()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, append([]pigeon.Option{pigeon.WithInMemoryStore(),
		pigeon.WithBaseURL(base), pigeon.WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	for i, tok := range toks {
		save := p.SaveAuth
		if i == 0 {
			save = p.SaveNewAuth
		}
		if err := save(context.Background(), pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			b.Fatal(err)
		}
	}
	return p, func() { _ = p.Close(); tr.CloseIdleConnections() }
}

// interleave runs the variants (the first is the baseline) in turns: each
// iteration sends a chunk of interleavedChunk requests through every
// variant, the first one rotating, and reports per variant wall and
// process CPU per request and, against the baseline, thr-x-<variant>
// (baseline time / variant time: higher is better, 1 is parity) and
// cpu-x-<variant> (variant CPU / baseline CPU: lower is better). It closes
// every variant.
func interleave(b *testing.B, vs ...*ilVariant) {
	b.Helper()
	defer func() {
		for _, v := range vs {
			v.close()
		}
	}()
	ctx := context.Background()
	for _, v := range vs { // warm up: connections open, caches filled
		if err := callers(ctx, interleavedChunk, v.get); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range vs {
			v := vs[(i+j)%len(vs)] // rotate who goes first
			start, cpu := time.Now(), processCPU()
			if err := callers(ctx, interleavedChunk, v.get); err != nil {
				b.Fatal(err)
			}
			v.wall += time.Since(start)
			v.cpu += processCPU() - cpu
		}
	}
	b.StopTimer()
	n := float64(b.N * interleavedChunk)
	base := vs[0]
	for _, v := range vs {
		b.ReportMetric(float64(v.wall.Nanoseconds())/n, "ns/req-"+v.name)
		b.ReportMetric(float64(v.cpu.Nanoseconds())/n, "cpu-ns/req-"+v.name)
		if v != base {
			b.ReportMetric(float64(base.wall)/float64(v.wall), "thr-x-"+v.name)
			b.ReportMetric(float64(v.cpu)/float64(base.cpu), "cpu-x-"+v.name)
		}
	}
}

const interleavedChunk = 2000

var errRawGet = errors.New("raw GET failed")

// callers sends n requests with get from httpCallers goroutines (get
// learns which: 0..httpCallers-1) and returns the first error.
func callers(ctx context.Context, n int, get func(ctx context.Context, w int) error) error {
	var (
		left  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	left.Store(int64(n))
	for w := range httpCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := get(ctx, w); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}
