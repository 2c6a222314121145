package pigeon_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// uids returns the UIDs of p's stored accounts.
func uids(t *testing.T, ctx context.Context, p *pigeon.AuthorizedPigeon) []string {
	t.Helper()
	all, err := p.AllAuths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range all {
		out = append(out, r.UID)
	}
	return out
}

// Removing an account while its refresh is held: the late result is
// thrown away, the waiter fails with ErrLoggedOut, and only the other
// account (if any) remains.
func TestAccounts_RemoveWhileRefreshHeld(t *testing.T) {
	for _, tc := range []struct {
		name string
		// meanwhile runs while a's refresh is held and returns the UIDs
		// that must remain.
		meanwhile func(e *env) []string
	}{
		{"current", func(*env) []string { return nil }},
		{"not current", func(e *env) []string { return []string{e.login("b@example.com").UID} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
			ctx := ctxT(t)
			a := e.login("a@example.com")
			e.be.ExpireAccessToken(a.AccessToken)
			waiter := rowGo(ctx, e.p, "/echo")
			recv(t, ctx, g.entered)
			want := tc.meanwhile(e)
			if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
				t.Fatal(err)
			}
			g.Open()
			if res := recv(t, ctx, waiter); !errors.Is(res.err, pigeon.ErrLoggedOut) {
				t.Fatalf("waiter: %v, want ErrLoggedOut", res.err)
			}
			rowWantCalls(t, e, 1)
			if got := uids(t, ctx, e.p); !slices.Equal(got, want) {
				t.Fatalf("accounts after the late result: %v, want %v", got, want)
			}
		})
	}
}

// The socket speaks for the current account: removing another account
// leaves it up, removing the current one disconnects it (as LogOut does).
func TestAccounts_RemoveCurrentDisconnectsSocket(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	ctx := ctxT(t)
	a := e.login("a@example.com")
	b := e.login("b@example.com") // current
	sub := joinChat(t, ctx, e, e.p)
	if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "still here"}); err != nil {
		t.Fatalf("socket after removing another account: %v", err)
	}
	if err := e.p.RemoveAccount(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	for open := true; open; {
		select {
		case _, open = <-sub.C:
		case <-ctx.Done():
			t.Fatal("subscription still open after removing the current account")
		}
	}
	if !errors.Is(sub.Err(), pigeon.ErrClosed) {
		t.Fatalf("subscription ended with %v, want ErrClosed", sub.Err())
	}
	if err := e.p.Emit(ctx, "message", "x"); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
		t.Fatalf("Emit after the removal: %v", err)
	}
}
