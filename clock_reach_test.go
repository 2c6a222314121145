package pigeon_test

// One clock (docs/refresh-control.md, item 7): WithClock's clock drives
// WithRetry's waits and the socket's reconnect back-off, for the
// authorized client and the ghost alike, which build one HTTP chain.

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
)

// A retry's wait of an hour ends when the injected clock moves an hour,
// not before: the first answer is a 503, the second is sent only after
// Advance.
func TestWithClock_DrivesRetryWaits(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T, opts ...pigeon.Option) pigeon.AppPigeon
	}{
		{"authorized", func(t *testing.T, opts ...pigeon.Option) pigeon.AppPigeon {
			p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, append(opts, pigeon.WithInMemoryStore())...)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"ghost", func(t *testing.T, opts ...pigeon.Option) pigeon.AppPigeon {
			g, err := pigeon.NewGhost(opts...)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			defer srv.Close()
			clock := newFakeClock()
			c := tc.open(t, pigeon.WithBaseURL(srv.URL), pigeon.WithClock(clock), pigeon.WithLogger(zaptest.NewLogger(t)),
				pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 2, MinDelay: time.Hour, MaxDelay: time.Hour}))
			defer c.Close()
			ctx := ctxT(t)
			res := rowGo(ctx, c, "/x")
			if err := clock.WaitTimers(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if n := hits.Load(); n != 1 {
				t.Fatalf("%d requests before the clock moved, want 1", n)
			}
			clock.Advance(time.Hour)
			if r := recv(t, ctx, res); r.err != nil || r.resp.StatusCode != http.StatusOK {
				t.Fatalf("after the wait: %v", r.err)
			}
			if n := hits.Load(); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
		})
	}
}

// A socket's reconnect back-off (up to an hour) runs on the injected
// clock: after the server drops the connection the socket reconnects
// only when the clock has moved by the delay it announced.
func TestWithClock_DrivesSocketReconnects(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	tok, err := e.be.CreateUser("clock@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"}, pigeon.WithBaseURL(e.srv.URL), pigeon.WithInMemoryStore(),
		pigeon.WithClock(clock), pigeon.WithLogger(zaptest.NewLogger(t)),
		pigeon.WithReconnect(pigeon.ReconnectPolicy{MinDelay: time.Hour, MaxDelay: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	states, err := p.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "chat:universal"}); err != nil {
		t.Fatal(err)
	}
	next := func(want pigeon.SocketState) pigeon.SocketStatus {
		t.Helper()
		for {
			st := recvStatus(t, ctx, states)
			if st.State == want {
				return st
			}
		}
	}
	next(pigeon.SocketConnected)
	e.be.CloseAllSockets(4000, "bye")
	st := next(pigeon.SocketReconnecting)
	if st.Delay <= 0 || st.Delay >= time.Hour {
		t.Fatalf("reconnect delay %v, want in (0, 1h)", st.Delay)
	}
	if err := clock.WaitFor(ctx, func(p []time.Duration) bool { return slices.Contains(p, st.Delay) }); err != nil {
		t.Fatalf("no reconnect timer of %v on the injected clock: %v", st.Delay, err)
	}
	clock.Advance(st.Delay)
	next(pigeon.SocketConnected)
}
