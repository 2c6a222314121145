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
	const base = "http://127.0.0.1:1"
	b.Run("baseline=net/http", func(b *testing.B) {
		c := &http.Client{Transport: canned{}}
		b.ReportAllocs()
		for range b.N {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/echo", nil)
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
			p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, append([]pigeon.Option{pigeon.WithInMemoryStore(),
				pigeon.WithBaseURL(base), pigeon.WithHTTPClient(&http.Client{Transport: canned{}})}, v.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u1", AccessToken: overheadToken, RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := p.Get(ctx, "/echo"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

const (
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
