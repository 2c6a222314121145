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

// BenchmarkRefreshStorm sends 1000 concurrent requests per iteration: with
// a valid token (baseline) and with a token the server has expired (storm:
// every request gets 401, exactly one refresh runs, all 1000 replay). A
// storm sends every request twice by definition, so a third variant, each
// caller sending two requests with a valid token, shows the floor any
// client could reach. The known-expiry storm saves the token with an
// ExpiresAt 5 s away (inside the hard window) that the server already
// refuses: every request waits for the one refresh and goes out once,
// with the new token, so no 401 is answered at all; its ratio is against
// the valid-token baseline.
func BenchmarkRefreshStorm(b *testing.B) {
	const n = 1000
	for _, v := range []struct {
		name   string
		storm  bool          // the server refuses the saved token
		expiry time.Duration // the saved ExpiresAt from now; 0: unknown
		reqs   int
	}{
		{"baseline=valid-token", false, 0, 1},
		{"pigeon=expired-token", true, 0, 1},
		{"floor=valid-token-two-requests-each", false, 0, 2},
		{"pigeon=known-expiry", true, 5 * time.Second, 1},
	} {
		b.Run(v.name, func(b *testing.B) {
			be := backend.New()
			defer be.Close()
			srv := httptest.NewServer(be)
			defer srv.Close()
			tr := tunedTransport()
			tr.MaxIdleConnsPerHost = n
			tr.MaxIdleConns = n
			defer tr.CloseIdleConnections()
			// The client's clock runs ahead of the server's by skew, so a
			// token it saves as issued now can be 5 s from its expiry.
			var skew atomic.Int64
			now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore(),
				pigeon.WithBaseURL(srv.URL), pigeon.WithHTTPClient(&http.Client{Transport: tr}), pigeon.WithClock(now))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			tok, err := be.CreateUser("storm@example.com", "pw")
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if i > 0 {
					if tok, err = be.IssueTokens(tok.UID); err != nil {
						b.Fatal(err)
					}
				}
				skew.Store(0)
				var exp time.Time
				if v.expiry > 0 {
					exp = tok.ExpiresAt
				}
				if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: exp}); err != nil {
					b.Fatal(err)
				}
				if v.expiry > 0 {
					skew.Store(int64(time.Until(exp.Add(-v.expiry))))
				}
				if v.storm {
					be.ExpireAccessToken(tok.AccessToken)
				}
				before := be.Stats()
				b.StartTimer()
				err := getStorm(ctx, []pigeon.AppPigeon{p}, n, v.reqs)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				after := be.Stats()
				want := int64(0)
				if v.storm {
					want = 1
				}
				if got := after.RefreshCalls - before.RefreshCalls; got != want {
					b.Fatalf("refresh calls = %d, want %d", got, want)
				}
				if got := after.Unauthorized - before.Unauthorized; v.expiry > 0 && got != 0 {
					b.Fatalf("%d requests answered 401 in the known-expiry storm, want 0", got)
				}
				b.StartTimer()
			}
		})
	}
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
