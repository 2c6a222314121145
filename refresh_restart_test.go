package pigeon_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/persistence"
)

// Row 4 across restarts: a rejected refresh removes the account's tokens
// from the on-disk store, so a later process start on the same directory
// and key finds no session and does not resurrect it.
func TestRefreshRow4_RejectedRefreshSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	key := []byte("fedcba9876543210fedcba9876543210")
	e := newEnv(t, envConfig{storeDir: dir, key: key})
	ctx := ctxT(t)
	tok := e.login("a@example.com")
	sub, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Authenticated, UID: tok.UID}) {
		t.Fatalf("first status %+v", st)
	}

	// The server no longer accepts either token: the request's 401 starts
	// a refresh, which the server rejects (401).
	e.be.RevokeRefreshToken(tok.RefreshToken)
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("request with the expired token: %v, want ErrSessionExpired", err)
	}
	if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Unauthenticated}) {
		t.Fatalf("status after the rejected refresh %+v", st)
	}
	rowWantCalls(t, e, 1)

	// Restart: client 1 closes (its store and its own actor system), client
	// 2 opens the same directory with the same key.
	e.reopen()
	sub2, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, sub2); st != (pigeon.AuthStatus{State: pigeon.Unauthenticated}) {
		t.Fatalf("status after restart %+v, want unauthenticated", st)
	}
	if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("CurrentAuth after restart: %v, want ErrNoAuth", err)
	}
	if err := e.p.SwitchAccount(ctx, tok.UID); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("SwitchAccount(%s) after restart: %v, want ErrUnknownAccount", tok.UID, err)
	}
	if all, err := e.p.AllAuths(ctx); err != nil || len(all) != 0 {
		t.Fatalf("AllAuths after restart: %d records, %v; want none", len(all), err)
	}
	// With no session a request goes out without a bearer (the old token
	// is not resurrected) and its 401 starts no refresh.
	_, err = e.p.Get(ctx, "/echo")
	var se *pigeon.StatusError
	if !errors.As(err, &se) || se.Response.StatusCode != http.StatusUnauthorized || !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("request after restart: %v, want the server's 401 matching ErrNoAuth", err)
	}
	if seen := e.seenTokens(); len(seen) == 0 || seen[len(seen)-1] != "" {
		t.Fatal("the request after restart carried a bearer")
	}
	rowWantCalls(t, e, 1)

	// The directory itself holds no record and no current account.
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := persistence.OpenBadger(dir, persistence.WithEncryptionKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Records) != 0 || st.Current != "" {
		t.Fatalf("store after restart: %d records, current %q; want none", len(st.Records), st.Current)
	}
}
