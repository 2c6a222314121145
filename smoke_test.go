package pigeon_test

import (
	"errors"
	"testing"

	"github.com/apppigeon/pigeon"
)

func TestSmoke_LoginGetRefresh(t *testing.T) {
	e := newEnv(t, envConfig{})
	tok := e.login("a@example.com")
	ctx := ctxT(t)
	r, err := e.p.Get(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Data struct{ UID string } }
	if err := r.Decode(&ans); err != nil || ans.Data.UID != tok.UID {
		t.Fatalf("echo = %s, %v", r.Body, err)
	}
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	if n := e.refreshCalls(); n != 1 {
		t.Fatalf("refresh calls = %d", n)
	}
	cur, err := e.p.CurrentAuth(ctx)
	if err != nil || string(cur.AccessToken) == tok.AccessToken {
		t.Fatalf("current = %v, %v", cur, err)
	}
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("after logout: %v", err)
	}
}
