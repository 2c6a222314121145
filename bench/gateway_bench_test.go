package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// BenchmarkGatewayAsGet compares 64 concurrent callers, each speaking for
// its own one of 64 users, doing authenticated GETs through one
// AuthorizedPigeon in gateway mode (As(uid).Get) with the raw baseline: a
// plain net/http client, tuned the same, each caller sending its user's
// bearer to the same loopback server. "As-per-request" calls As for every
// request, as a gateway handler that does not keep the Account would.
func BenchmarkGatewayAsGet(b *testing.B) {
	be := backend.New()
	defer be.Close()
	srv := httptest.NewServer(be)
	defer srv.Close()
	toks := make([]backend.Tokens, httpCallers)
	for i := range toks {
		t, err := be.CreateUser(fmt.Sprintf("gw%02d@example.com", i), "pw")
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = t
	}
	var next atomic.Int64
	pick := func() backend.Tokens { return toks[int(next.Add(1)-1)%len(toks)] }
	b.Run("baseline=net/http", func(b *testing.B) {
		tr := tunedTransport()
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		b.SetParallelism(httpCallers / max(1, runtimeProcs()))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			tok := pick()
			for pb.Next() {
				if !rawGet(b, c, srv.URL+"/echo", tok.AccessToken) {
					return
				}
			}
		})
	})
	for _, perRequest := range []bool{false, true} {
		name := "pigeon=As.Get"
		if perRequest {
			name = "pigeon=As-per-request.Get"
		}
		b.Run(name, func(b *testing.B) {
			tr := tunedTransport()
			defer tr.CloseIdleConnections()
			p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore(),
				pigeon.WithBaseURL(srv.URL), pigeon.WithHTTPClient(&http.Client{Transport: tr}))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			for _, tok := range toks {
				if err := p.SaveAuth(context.Background(), pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(httpCallers / max(1, runtimeProcs()))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				uid := pick().UID
				a, err := p.As(uid)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if perRequest {
						if a, err = p.As(uid); err != nil {
							b.Error(err)
							return
						}
					}
					if _, err := a.Get(ctx, "/echo"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
