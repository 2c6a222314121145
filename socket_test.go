package pigeon_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

func wsURL(e *env) string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws" }

// joinChat connects c's socket to the universal room of e's backend and
// listens to its chat messages; the subscription is closed at cleanup.
func joinChat(t *testing.T, ctx context.Context, e *env, c pigeon.AppPigeon) *pigeon.Subscription {
	t.Helper()
	if err := c.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "chat:universal"}); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Listen(ctx, "message")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// TestSocket_ChatAuthorizedAndGhost: an authorized user and a ghost share
// the universal room over real websockets to the example backend.
func TestSocket_ChatAuthorizedAndGhost(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	e.login("chat@example.com")
	ctx := ctxT(t)
	sub := joinChat(t, ctx, e, e.p)

	g := newGhost(t, e)
	gt, err := e.be.CreateUser("casper@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	g.SetAuthToken(gt.AccessToken)
	gsub := joinChat(t, ctx, e, g)
	if _, err := g.EmitWithAck(ctx, "message", map[string]string{"text": "boo"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan pigeon.Event{sub.C, gsub.C} {
		select {
		case ev := <-c:
			var m struct{ Text string }
			_ = json.Unmarshal(ev.Data, &m)
			if ev.Name != "message" || !strings.Contains(string(ev.Data), "boo") {
				t.Fatalf("event %+v", ev)
			}
		case <-ctx.Done():
			t.Fatal("no event")
		}
	}
	if err := g.DisconnectSocket(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-gsub.C; ok {
		t.Fatal("ghost subscription still open after DisconnectSocket")
	}
	if !errors.Is(gsub.Err(), pigeon.ErrClosed) {
		t.Fatalf("gsub.Err = %v", gsub.Err())
	}
	if err := g.Emit(ctx, "message", "x"); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
		t.Fatalf("Emit after disconnect = %v", err)
	}
}

// TestRefreshRow24_SocketGetsUpdateWithoutReconnect: a token refresh while
// the socket is connected reaches it as an `update` frame on the same
// connection.
func TestRefreshRow24_SocketGetsUpdateWithoutReconnect(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	tok := e.login("live@example.com")
	ctx := ctxT(t)
	sub := joinChat(t, ctx, e, e.p)
	before := e.be.Stats()
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); err != nil { // 401 → refresh
		t.Fatal(err)
	}
	// The update is acked before a later emit on the same connection is: an
	// acked emit after the refresh proves ordering without polling.
	if err := e.p.Emit(ctx, "message", map[string]string{"text": "after"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.C:
	case <-ctx.Done():
		t.Fatal("no event after refresh")
	}
	after := e.be.Stats()
	if after.UpdateAcks-before.UpdateAcks != 1 {
		t.Fatalf("update acks = %d, want 1", after.UpdateAcks-before.UpdateAcks)
	}
	if after.WSTotal != before.WSTotal || after.InitFrames != before.InitFrames {
		t.Fatalf("reconnected: connections %d→%d, inits %d→%d", before.WSTotal, after.WSTotal, before.InitFrames, after.InitFrames)
	}
	var _ = backend.Tokens{}
}

// A socket opened with its own fixed Token does not follow the client's
// token: a refresh sends it no `update`; a default-header change still does
// (keeping its token).
func TestSocket_FixedTokenIgnoresRefreshes(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	alice := e.login("alice@example.com")
	bob, err := e.be.CreateUser("bob@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := e.p.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "chat:universal", Token: bob.AccessToken}); err != nil {
		t.Fatal(err)
	}
	before := e.be.Stats()
	e.be.ExpireAccessToken(alice.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); err != nil { // 401 → refresh of alice's token
		t.Fatal(err)
	}
	// An acked emit after the refresh: an update, had one been sent, would
	// have been answered first on the same connection.
	if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "as bob"}); err != nil {
		t.Fatal(err)
	}
	mid := e.be.Stats()
	if mid.RefreshCalls != before.RefreshCalls+1 || mid.UpdateFrames != before.UpdateFrames {
		t.Fatalf("refresh calls +%d, update frames +%d; want +1, +0",
			mid.RefreshCalls-before.RefreshCalls, mid.UpdateFrames-before.UpdateFrames)
	}
	e.p.UpdateHeaders(map[string]string{"X-Client": "test"})
	if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "still bob"}); err != nil {
		t.Fatal(err)
	}
	after := e.be.Stats()
	if after.UpdateAcks != mid.UpdateAcks+1 {
		t.Fatalf("update acks +%d after UpdateHeaders, want +1 (accepted: still bob's valid token)", after.UpdateAcks-mid.UpdateAcks)
	}
}
