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
// request, as a gateway handler that does not keep the Account would;
// "ContextWithAccount" sends each request through the client's verbs with
// the caller's account in its context; "current" is the plain Get of one
// current account, for reference.
// Besides wall time it reports cpu-ns/op: the process's CPU time (client
// and server, both in this process) per request, which other processes'
// load on the machine does not inflate.
func BenchmarkGatewayAsGet(b *testing.B) {
	srv, toks := gatewayUsers(b, "gw")
	var next atomic.Int64
	pick := func() backend.Tokens { return toks[int(next.Add(1)-1)%len(toks)] }
	b.Run("baseline=net/http", func(b *testing.B) {
		tr := tunedTransport()
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		b.SetParallelism(httpCallers / max(1, runtimeProcs()))
		b.ReportAllocs()
		b.ResetTimer()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			tok := pick()
			for pb.Next() {
				if !rawGet(b, c, srv.URL+"/echo", tok.AccessToken) {
					return
				}
			}
		})
	})
	for _, mode := range []string{"current", "As", "As-per-request", "ContextWithAccount"} {
		name := "pigeon=" + mode + ".Get"
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
			if mode == "current" {
				// The facade's plain Get, every caller as one current account.
				if err := p.SwitchAccount(context.Background(), toks[0].UID); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(httpCallers / max(1, runtimeProcs()))
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				uid := pick().UID
				var c pigeon.AppPigeon = p
				switch mode {
				case "As", "As-per-request":
					a, err := p.As(uid)
					if err != nil {
						b.Error(err)
						return
					}
					c = a
				case "ContextWithAccount":
					ctx = pigeon.ContextWithAccount(ctx, uid)
				}
				for pb.Next() {
					if mode == "As-per-request" {
						a, err := p.As(uid)
						if err != nil {
							b.Error(err)
							return
						}
						c = a
					}
					if _, err := c.Get(ctx, "/echo"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// reportCPU starts measuring the process's CPU time; the function it
// returns reports it per op as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkGatewayAsGetInterleaved is BenchmarkGatewayAsGet's load (64
// callers, each acting for its own account) with the raw baseline and the
// gateway variants taking turns, chunk by chunk, as in
// BenchmarkHTTPGetInterleaved: a machine whose load drifts weighs on all
// alike. "As.Get" keeps one Account per caller; "ContextWithAccount.Get"
// names the caller's account in each request's context. thr-x-As.Get is
// the ≥ 0.97 goal of gateway mode.
func BenchmarkGatewayAsGetInterleaved(b *testing.B) {
	srv, toks := gatewayUsers(b, "gwi")
	plain := plainVariant(b, srv.URL, func(w int) string { return toks[w].AccessToken })
	pa, closeA := ilFacade(b, srv.URL, toks)
	accts := make([]*pigeon.Account, len(toks))
	for i, tok := range toks {
		a, err := pa.As(tok.UID)
		if err != nil {
			b.Fatal(err)
		}
		accts[i] = a
	}
	as := &ilVariant{name: "As.Get", close: closeA, get: func(ctx context.Context, w int) error {
		_, err := accts[w].Get(ctx, "/echo")
		return err
	}}
	pc, closeC := ilFacade(b, srv.URL, toks)
	ctxs := make([]context.Context, len(toks))
	for i, tok := range toks {
		ctxs[i] = pigeon.ContextWithAccount(context.Background(), tok.UID)
	}
	byCtx := &ilVariant{name: "ContextWithAccount.Get", close: closeC, get: func(_ context.Context, w int) error {
		_, err := pc.Get(ctxs[w], "/echo")
		return err
	}}
	interleave(b, plain, as, byCtx)
}

// gatewayUsers starts the example backend on loopback (closed when b
// ends) with httpCallers users named prefix00@example.com and so on.
func gatewayUsers(b *testing.B, prefix string) (*httptest.Server, []backend.Tokens) {
	b.Helper()
	be := backend.New()
	b.Cleanup(be.Close)
	srv := httptest.NewServer(be)
	b.Cleanup(srv.Close)
	toks := make([]backend.Tokens, httpCallers)
	for i := range toks {
		t, err := be.CreateUser(fmt.Sprintf("%s%02d@example.com", prefix, i), "pw")
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = t
	}
	return srv, toks
}
