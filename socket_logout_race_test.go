package pigeon_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/apppigeon/pigeon"
)

// Issue 13 item 10: a LogOut that lands while SocketInit is still
// connecting ends that socket; SocketInit returns the real cause
// (ErrLoggedOut), not the ErrClosed of a client that is still open.
func TestSocketInit_RacingLogOutReturnsLoggedOut(t *testing.T) {
	park := newHold(func(r *http.Request) bool { return r.URL.Path == "/ws" })
	t.Cleanup(park.Release)
	e := newEnv(t, envConfig{noClock: true, wrap: park.wrap})
	e.login("race@example.com")
	ctx := ctxT(t)

	done := make(chan error, 1)
	go func() {
		done <- e.p.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "chat:universal"})
	}()
	recv(t, ctx, park.held) // SocketInit's dial is at the server
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	err := recv(t, ctx, done)
	park.Release()
	if !errors.Is(err, pigeon.ErrLoggedOut) || errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SocketInit racing LogOut = %v; want ErrLoggedOut (the client is open, not ErrClosed)", err)
	}
	if _, err := e.p.Get(ctx, "/echo"); errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("the client is open: Get = %v", err)
	}
}
