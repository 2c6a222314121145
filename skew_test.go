package pigeon_test

// Clock skew (docs/refresh-control.md, item 4): pigeon's clock 5 minutes
// ahead of or behind the server's. The example backend decides expiry
// with its own clock and says its time in every answer's Date header, as
// real servers do; pigeon is given a clock that is off by the skew.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

// skewedClock is the server's clock moved by off.
type skewedClock struct {
	base *wstest.Clock
	off  time.Duration
}

func (c skewedClock) Now() time.Time { return c.base.Now().Add(c.off) }
func (c skewedClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return c.base.AfterFunc(d, f)
}

// jwtOnly is a JSONRefresher whose answers say no expiresAt: the expiry
// comes from the JWT's exp.
type jwtOnly struct{ pigeon.JSONRefresher }

func (j jwtOnly) RefreshToken(ctx context.Context, rt string, c *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	r, err := j.JSONRefresher.RefreshToken(ctx, rt, c)
	r.ExpiresAt = time.Time{}
	return r, err
}

// For 40 minutes of server time with 4-minute tokens, a request every 30
// s: every request succeeds; at most one goes out with a token the server
// holds expired (the login's, whose ExpiresAt the application gave in the
// server's clock), answered by one refresh and one replay; refreshes
// follow the tokens' lifetimes (no loop: at most one per 3 minutes, plus
// the first), both from an absolute expiresAt and from a JWT exp.
func TestClockSkew_NoLoopNoExpiredTokens(t *testing.T) {
	const ttl, step, steps = 4 * time.Minute, 30 * time.Second, 80
	for _, tc := range []struct {
		skew time.Duration
		jwt  bool
	}{{5 * time.Minute, false}, {-5 * time.Minute, false}, {5 * time.Minute, true}, {-5 * time.Minute, true}} {
		t.Run(fmt.Sprintf("client %v, jwt %v", tc.skew, tc.jwt), func(t *testing.T) {
			server := newFakeClock()
			var refused atomic.Int64
			bopts := []backend.Option{backend.WithClock(server.Now), backend.WithAccessTTL(ttl)}
			var refresher pigeon.RefreshTokenManager = pigeon.JSONRefresher{Path: "/auth/refresh"}
			if tc.jwt {
				bopts = append(bopts, backend.WithJWTAccessTokens())
				refresher = jwtOnly{pigeon.JSONRefresher{Path: "/auth/refresh"}}
			}
			e := newEnv(t, envConfig{
				noClock: true, backend: bopts, refresher: refresher,
				pigeon: []pigeon.Option{pigeon.WithClock(skewedClock{server, tc.skew})},
				wrap: func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Date", server.Now().UTC().Format(http.TimeFormat))
						if r.URL.Path == "/echo" {
							next.ServeHTTP(statusSpy{w, &refused}, r)
							return
						}
						next.ServeHTTP(w, r)
					})
				},
			})
			tok := e.login("skew@example.com")
			ctx := ctxT(t)
			for i := range steps {
				server.Advance(step)
				if _, err := e.p.Get(ctx, "/echo"); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				// A background refresh the request started ends before
				// the server's clock moves again.
				awaitNoFlight(t, ctx, e.p, tok.UID)
			}
			if n := refused.Load(); n > 1 {
				t.Fatalf("%d requests went out with a token the server held expired, want at most 1", n)
			}
			if n, most := e.refreshCalls(), int64(steps*step/(ttl-time.Minute))+1; n > most || n < most-3 {
				t.Fatalf("%d refreshes in %v of 4-minute tokens, want about one per 3 minutes (%d at most)", n, steps*step, most)
			}
		})
	}
}

// statusSpy counts 401 answers.
type statusSpy struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (s statusSpy) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		s.n.Add(1)
	}
	s.ResponseWriter.WriteHeader(code)
}

// An expires_in counts from when the answer arrived (here 20 s after the
// request left, by the injected clock), and is not moved by the answer's
// Date, however far off: it is a duration, not the server's time.
func TestClockSkew_ExpiresInFromArrival(t *testing.T) {
	clk := newFakeClock()
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Advance(20 * time.Second) // a slow answer
		w.Header().Set("Date", clk.Now().Add(5*time.Minute).UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"new","expires_in":300,"token_type":"Bearer"}`)
	}))
	defer token.Close()
	p, err := pigeon.NewAuthorized(pigeon.OAuth2Refresher{TokenURL: token.URL + "/token", ClientID: "app"},
		pigeon.WithBaseURL(token.URL), pigeon.WithInMemoryStore(), pigeon.WithClock(clk), pigeon.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u", AccessToken: "old", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	sent := clk.Now()
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := p.CurrentAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := sent.Add(20*time.Second + 300*time.Second); string(cur.AccessToken) != "new" || !cur.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v (token %q), want %v: 300 s from the answer's arrival", cur.ExpiresAt, cur.AccessToken, want)
	}
}
