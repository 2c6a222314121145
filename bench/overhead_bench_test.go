package bench

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/apppigeon/pigeon"
)

// BenchmarkHTTPClientOverhead measures the client side alone: one caller
// sending GETs through a RoundTripper that answers at once with a canned
// 200 (no network, no server), through a plain net/http client (the raw
// baseline) and through the facade, bare, with WithRetry and with no-op
// OpenTelemetry providers. Its ns/op is CPU per request of the client
// path, free of the server's share and of the loopback's noise, so it
// shows what pigeon adds per request even on a loaded machine.
func BenchmarkHTTPClientOverhead(b *testing.B) {
	b.Run("baseline=net/http", func(b *testing.B) {
		// An idle facade client stays open meanwhile, so the baseline
		// runs with the same live heap (the actor system's) and so the
		// same garbage-collection cost per allocated byte as the facade.
		idle := newOverheadClient(b, nil)
		defer idle.Close()
		c := &http.Client{Transport: canned{}}
		b.ReportAllocs()
		defer reportCPU(b)()
		for range b.N {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, overheadBase+"/echo", nil)
			req.Header.Set("Authorization", "Bearer "+overheadToken)
			req.Header.Set("Accept", "application/json")
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	})
	for _, v := range []struct {
		name string
		opts []pigeon.Option
	}{
		{"pigeon=Get", nil},
		{"pigeon=Get+WithRetry", []pigeon.Option{pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 3})}},
		{"pigeon=Get+noopOTel", []pigeon.Option{pigeon.WithTracerProvider(tracenoop.NewTracerProvider()),
			pigeon.WithMeterProvider(metricnoop.NewMeterProvider())}},
	} {
		b.Run(v.name, func(b *testing.B) {
			p := newOverheadClient(b, v.opts)
			defer p.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			for range b.N {
				if _, err := p.Get(ctx, "/echo"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHTTPClientOverheadAccounts is BenchmarkHTTPClientOverhead's
// client path in gateway mode: the same GET sent as an Account (As, kept
// across requests) and through the client with the account named in the
// context (ContextWithAccount), against the current account's plain Get.
func BenchmarkHTTPClientOverheadAccounts(b *testing.B) {
	p := newOverheadClient(b, nil)
	defer p.Close()
	a, err := p.As("u1")
	if err != nil {
		b.Fatal(err)
	}
	byCtx := pigeon.ContextWithAccount(context.Background(), "u1")
	for _, v := range []struct {
		name string
		get  func() error
	}{
		{"pigeon=current.Get", func() error { _, err := p.Get(context.Background(), "/echo"); return err }},
		{"pigeon=As.Get", func() error { _, err := a.Get(context.Background(), "/echo"); return err }},
		{"pigeon=ContextWithAccount.Get", func() error { _, err := p.Get(byCtx, "/echo"); return err }},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for range b.N {
				if err := v.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// newOverheadClient is a facade client over canned, built with opts, its
// account signed in with overheadToken for an hour.
func newOverheadClient(b *testing.B, opts []pigeon.Option) *pigeon.AuthorizedPigeon {
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, append([]pigeon.Option{pigeon.WithInMemoryStore(),
		pigeon.WithBaseURL(overheadBase), pigeon.WithHTTPClient(&http.Client{Transport: canned{}})}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.SaveNewAuth(context.Background(), pigeon.SaveAuthParams{UID: "u1", AccessToken: overheadToken, RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		_ = p.Close()
		b.Fatal(err)
	}
	return p
}

const (
	overheadBase  = "http://127.0.0.1:1"
	overheadToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
	overheadBody  = `{"ok":true,"path":"/echo"}`
)

// canned answers every request 200 with a small JSON body, at once; it
// refuses one without the bearer, so the facade's runs prove it sent it.
type canned struct{}

func (canned) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if req.Header.Get("Authorization") != "Bearer "+overheadToken {
		return &http.Response{StatusCode: http.StatusBadRequest, Body: http.NoBody, Request: req}, nil
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(overheadBody)),
		ContentLength: int64(len(overheadBody)), Request: req,
	}, nil
}
