package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// BenchmarkAccountsStorm is gateway mode's storm: 1,000 accounts in one
// client (an encrypted badger store on disk), 10 concurrent requests each
// through As(uid). In the storm every account's access token has been
// expired by the server, so each of the 10,000 requests is refused once,
// exactly one refresh runs per account (1,000 in all, checked against the
// server's count), and every request is replayed. The baseline sends the
// same 10,000 requests with valid tokens; the floor sends each of them
// twice with valid tokens (a storm sends every request twice by
// definition).
func BenchmarkAccountsStorm(b *testing.B) {
	const accounts, perAccount = 1000, 10
	for _, v := range []struct {
		name  string
		storm bool
		reqs  int
	}{{"baseline=valid-tokens", false, 1}, {"pigeon=all-expired", true, 1}, {"floor=valid-tokens-two-requests-each", false, 2}} {
		b.Run(v.name, func(b *testing.B) {
			be := backend.New()
			defer be.Close()
			srv := httptest.NewServer(be)
			defer srv.Close()
			tr := tunedTransport()
			// A gateway caps its connections: 10,000 concurrent requests share 256.
			tr.MaxConnsPerHost, tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256, 256
			defer tr.CloseIdleConnections()
			p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
				pigeon.WithStoreDir(b.TempDir()), pigeon.WithEncryptionKey(make([]byte, 32)),
				pigeon.WithBaseURL(srv.URL), pigeon.WithHTTPClient(&http.Client{Transport: tr}))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			toks := make([]backend.Tokens, accounts)
			for i := range toks {
				if toks[i], err = be.CreateUser(fmt.Sprintf("u%04d@example.com", i), "pw"); err != nil {
					b.Fatal(err)
				}
			}
			clients := make([]pigeon.AppPigeon, accounts)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range toks {
					if i > 0 {
						if toks[j], err = be.IssueTokens(toks[j].UID); err != nil {
							b.Fatal(err)
						}
					}
					t := toks[j]
					if err := p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: t.UID, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken}); err != nil {
						b.Fatal(err)
					}
					if v.storm {
						be.ExpireAccessToken(t.AccessToken)
					}
					if clients[j] == nil {
						a, err := p.As(t.UID)
						if err != nil {
							b.Fatal(err)
						}
						clients[j] = a
					}
				}
				before := be.Stats().RefreshCalls
				b.StartTimer()
				err := getStorm(ctx, clients, perAccount, v.reqs)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				want := int64(0)
				if v.storm {
					want = accounts
				}
				if got := be.Stats().RefreshCalls - before; got != want {
					b.Fatalf("refresh calls = %d, want %d", got, want)
				}
				b.StartTimer()
			}
		})
	}
}
