package pigeon_test

// Gateway mode (docs/accounts.md): one AuthorizedPigeon serving many
// accounts at once through As, ContextWithAccount and SaveAuth. Refresh
// calls are counted by the example backend's refresh hook, per account,
// never by pigeon.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// acctAdd creates a user on the backend and saves it without switching.
func acctAdd(t *testing.T, e *env, email string) backend.Tokens {
	t.Helper()
	tok, err := e.be.CreateUser(email, "pw-"+email)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.SaveAuth(context.Background(), pigeon.SaveAuthParams{
		UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt,
	}); err != nil {
		t.Fatal(err)
	}
	return tok
}

// acctRefuse ends acct's session by a refused refresh: the server revokes
// its stored refresh token and expires its access token, then a request
// through acct gets ErrSessionExpired.
func acctRefuse(t *testing.T, ctx context.Context, e *env, acct *pigeon.Account) {
	t.Helper()
	recs, err := e.p.AllAuths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.UID == acct.UID() {
			e.be.RevokeRefreshToken(string(r.RefreshToken))
			e.be.ExpireAccessToken(string(r.AccessToken))
		}
	}
	if _, err := acct.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("%s's refused refresh: %v, want ErrSessionExpired", acct.UID(), err)
	}
}

// acctAs is e.p.As(uid), failing the test on error; closed at cleanup.
func acctAs(t *testing.T, e *env, uid string) *pigeon.Account {
	t.Helper()
	a, err := e.p.As(uid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// acctRefreshes counts refresh calls per refresh token presented, so per
// account (each account's refresh token is known to the test), and hands
// the token to the backend's refresh hook as the X-Refresh-Token header.
type acctRefreshes struct {
	mu sync.Mutex
	by map[string]int // refresh token -> calls
}

func (c *acctRefreshes) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth/refresh" {
			var body struct {
				RefreshToken string `json:"refreshToken"`
			}
			b, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(b, &body)
			r.Body = io.NopCloser(strings.NewReader(string(b)))
			r.Header.Set("X-Refresh-Token", body.RefreshToken)
			c.mu.Lock()
			if c.by == nil {
				c.by = map[string]int{}
			}
			c.by[body.RefreshToken]++
			c.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (c *acctRefreshes) calls(rt string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[rt]
}

func (c *acctRefreshes) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.by {
		n += v
	}
	return n
}

// Item 2: 50 accounts × 20 concurrent requests, every access token
// expired: exactly one refresh per account, and the 50 refreshes run at
// the same time (the hook holds each until all 50 are inside it: one
// flight at a time would never get there).
func TestAccounts_ParallelSingleFlightPerAccount(t *testing.T) {
	const accounts, perAccount = 50, 20
	all := newBarrier(accounts)
	rc := &acctRefreshes{}
	tr := testTransport(t, accounts*perAccount)
	e := newEnv(t, envConfig{
		wrap: rc.wrap,
		backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
			return !all.wait(r.Context())
		})},
		pigeon: []pigeon.Option{pigeon.WithHTTPClient(&http.Client{Transport: tr})},
	})
	ctx := ctxT(t)
	toks := make([]backend.Tokens, accounts)
	for i := range toks {
		toks[i] = acctAdd(t, e, fmt.Sprintf("u%02d@example.com", i))
		e.be.ExpireAccessToken(toks[i].AccessToken)
	}
	hc := e.p.HTTPClient()
	type result struct {
		want, got string
		err       error
	}
	results := make(chan result, accounts*perAccount)
	var wg sync.WaitGroup
	for i, tok := range toks {
		acct := acctAs(t, e, tok.UID)
		for j := range perAccount {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var r *pigeon.Response
				var err error
				if j%2 == 0 {
					r, err = acct.Get(ctx, "/echo")
				} else {
					// The client's one HTTPClient, the account in the context.
					r, err = acctGetWith(ctx, hc, e.srv.URL+"/echo", tok.UID)
				}
				res := result{want: toks[i].UID, err: err}
				if err == nil {
					res.got = rowUID(t, r)
				}
				results <- res
			}()
		}
	}
	wg.Wait()
	close(results)
	for res := range results {
		if res.err != nil {
			t.Fatalf("request as %s: %v", res.want, res.err)
		}
		if res.got != res.want {
			t.Fatalf("request as %s answered for %q", res.want, res.got)
		}
	}
	for i, tok := range toks {
		if n := rc.calls(tok.RefreshToken); n != 1 {
			t.Errorf("account %d: %d refresh calls, want 1", i, n)
		}
	}
	if n := rc.total(); n != accounts {
		t.Fatalf("%d refresh calls in all, want %d", n, accounts)
	}
}

// acctGetWith sends a GET through hc with uid in the context, as another
// SDK handed the client would, and reads it like the verbs do.
func acctGetWith(ctx context.Context, hc *http.Client, url, uid string) (*pigeon.Response, error) {
	req, err := http.NewRequestWithContext(pigeon.ContextWithAccount(ctx, uid), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return &pigeon.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Item 1: one *http.Client from HTTPClient serves several users at once,
// each request as the account its context names; a request without one
// goes as the current account; a UID the store does not hold fails with
// ErrUnknownAccount and nothing is sent.
func TestAccounts_ContextWithAccountThroughHTTPClient(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxT(t)
	cur := e.login("current@example.com")
	var toks []backend.Tokens
	for i := range 4 {
		toks = append(toks, acctAdd(t, e, fmt.Sprintf("user%d@example.com", i)))
	}
	hc := e.p.HTTPClient()
	var wg sync.WaitGroup
	errs := make(chan error, 4*25)
	for _, tok := range toks {
		for range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := acctGetWith(ctx, hc, e.srv.URL+"/echo", tok.UID)
				if err == nil {
					if uid := rowUID(t, r); uid != tok.UID {
						err = fmt.Errorf("sent as %q, want %q", uid, tok.UID)
					}
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := acctGetWith(ctx, hc, e.srv.URL+"/echo", "")
	if err != nil || rowUID(t, r) != cur.UID {
		t.Fatalf("request without an account: %v, want the current account", err)
	}
	// The verbs read the context too.
	r, err = e.p.Get(pigeon.ContextWithAccount(ctx, toks[2].UID), "/echo")
	if err != nil || rowUID(t, r) != toks[2].UID {
		t.Fatalf("verb with ContextWithAccount: %v", err)
	}
	seen := len(e.seenTokens())
	if _, err := acctGetWith(ctx, hc, e.srv.URL+"/echo", "nobody"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("unknown account through HTTPClient: %v, want ErrUnknownAccount", err)
	}
	if _, err := e.p.Get(pigeon.ContextWithAccount(ctx, "nobody"), "/echo"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("unknown account through Get: %v, want ErrUnknownAccount", err)
	}
	if n := len(e.seenTokens()); n != seen {
		t.Fatalf("%d requests of an unknown account reached the server", n-seen)
	}
	if rec := rowCurrent(t, ctx, e.p); rec.UID != cur.UID {
		t.Fatalf("current account changed to %q", rec.UID)
	}
}

// Item 1: SaveAuth stores without switching: the current account stays,
// SubscribeAuth sees nothing, SubscribeAccounts sees the new account; bad
// input is an error and stores nothing.
func TestAccounts_SaveAuthKeepsCurrent(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxT(t)
	cur := e.login("current@example.com")
	sub, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, sub); st.UID != cur.UID {
		t.Fatalf("first status %+v", st)
	}
	accts, err := e.p.SubscribeAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := acctAdd(t, e, "other@example.com")
	if st := recv(t, ctx, accts); st != (pigeon.AccountStatus{UID: other.UID, State: pigeon.Authenticated}) {
		t.Fatalf("accounts stream %+v, want the saved account Authenticated", st)
	}
	if rec := rowCurrent(t, ctx, e.p); rec.UID != cur.UID {
		t.Fatalf("SaveAuth switched to %q", rec.UID)
	}
	r, err := e.p.Get(ctx, "/echo")
	if err != nil || rowUID(t, r) != cur.UID {
		t.Fatalf("request after SaveAuth: %v, want the current account", err)
	}
	a := acctAs(t, e, other.UID)
	if r, err := a.Get(ctx, "/echo"); err != nil || rowUID(t, r) != other.UID {
		t.Fatalf("As the saved account: %v", err)
	}
	if err := e.p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: "x"}); err == nil {
		t.Fatal("SaveAuth without an access token succeeded")
	}
	if all, err := e.p.AllAuths(ctx); err != nil || len(all) != 2 {
		t.Fatalf("AllAuths: %d, %v; want 2", len(all), err)
	}
	// The current-account stream's next value is the logout, not the save.
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, sub); st != (pigeon.AuthStatus{State: pigeon.Unauthenticated}) {
		t.Fatalf("current stream after SaveAuth and LogOut: %+v, want Unauthenticated", st)
	}
	if st := recv(t, ctx, accts); st != (pigeon.AccountStatus{UID: cur.UID, State: pigeon.Unauthenticated}) {
		t.Fatalf("accounts stream after LogOut %+v", st)
	}
	// The other account is still signed in and serving.
	if r, err := a.Get(ctx, "/echo"); err != nil || rowUID(t, r) != other.UID {
		t.Fatalf("As the saved account after LogOut: %v", err)
	}
}

// Item 2: the all-accounts stream carries one {UID, State} per session
// start and end, none for a refresh, a re-save or a switch; an Account's
// SubscribeAuth sees its own account only.
func TestAccounts_SubscribeAccountsAndAccountStatus(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxT(t)
	accts, err := e.p.SubscribeAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	acctA := acctAs(t, e, a.UID)
	subA, err := acctA.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ctx, subA); st != (pigeon.AuthStatus{State: pigeon.Authenticated, UID: a.UID}) {
		t.Fatalf("account A's first status %+v", st)
	}
	// No transitions: a re-save of A, a refresh of A, switching to B.
	if err := e.p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: a.UID, AccessToken: a.AccessToken, RefreshToken: a.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	e.be.ExpireAccessToken(a.AccessToken)
	if _, err := acctA.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	if err := e.p.SwitchAccount(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	// Transitions: B removed (it was current), A's refresh refused, A back.
	if err := e.p.RemoveAccount(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	acctRefuse(t, ctx, e, acctA)
	a2, err := e.be.IssueTokens(a.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: a.UID, AccessToken: a2.AccessToken, RefreshToken: a2.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	want := []pigeon.AccountStatus{
		{UID: a.UID, State: pigeon.Authenticated},
		{UID: b.UID, State: pigeon.Authenticated},
		{UID: b.UID, State: pigeon.Unauthenticated},
		{UID: a.UID, State: pigeon.Unauthenticated},
		{UID: a.UID, State: pigeon.Authenticated},
	}
	for i, w := range want {
		if st := recv(t, ctx, accts); st != w {
			t.Fatalf("accounts stream value %d: %+v, want %+v", i, st, w)
		}
	}
	for i, w := range []pigeon.AuthState{pigeon.Unauthenticated, pigeon.Authenticated} {
		if st := recv(t, ctx, subA); st != (pigeon.AuthStatus{State: w, UID: a.UID}) {
			t.Fatalf("account A's status %d: %+v, want %v", i, st, w)
		}
	}
	// The Account speaks for the new session.
	if r, err := acctA.Get(ctx, "/echo"); err != nil || rowUID(t, r) != a.UID {
		t.Fatalf("A after signing in again: %v", err)
	}
	// Nothing else is queued: both streams end empty when closed.
	if err := acctA.Close(); err != nil {
		t.Fatal(err)
	}
	if st, ok := <-subA; ok {
		t.Fatalf("account A's stream after Close: %+v", st)
	}
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if st, ok := <-accts; ok {
		t.Fatalf("accounts stream after Close: %+v", st)
	}
}

// Items 2 and 3, row 4 per account: A's refresh is refused while B's runs:
// A's waiters and A's late 401 fail with ErrSessionExpired, A leaves the
// store and As(A) fails with ErrUnknownAccount; B's refresh lands on B and
// B keeps serving; the current account is untouched.
func TestAccounts_RejectedRefreshEndsOnlyThatAccount(t *testing.T) {
	gA, gB := newGate(), newGate()
	var rtA rowString
	h := newHold(func(r *http.Request) bool { return r.URL.Path == "/echo" && r.Header.Get("X-Hold") != "" })
	rc := &acctRefreshes{}
	e := newEnv(t, envConfig{
		wrap: rowChain(h.wrap, rc.wrap),
		backend: []backend.Option{backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("X-Refresh-Token") == rtA.Load() {
				return gA.hook(w, r)
			}
			return gB.hook(w, r)
		})},
	})
	ctx := ctxT(t)
	cur := e.login("current@example.com")
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	rtA.Store(a.RefreshToken)
	accts, err := e.p.SubscribeAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acctA, acctB := acctAs(t, e, a.UID), acctAs(t, e, b.UID)
	e.be.RevokeRefreshToken(a.RefreshToken)
	e.be.ExpireAccessToken(a.AccessToken)
	e.be.ExpireAccessToken(b.AccessToken)

	late := rowGo(ctx, acctA, "/echo", pigeon.WithHeader("X-Hold", "1"))
	recv(t, ctx, h.held)
	waitersA := []<-chan rowResult{rowGo(ctx, acctA, "/echo"), rowGo(ctx, acctA, "/echo")}
	recv(t, ctx, gA.entered)
	waiterB := rowGo(ctx, acctB, "/echo")
	recv(t, ctx, gB.entered) // both refreshes are in flight at once
	// Both of A's waiters must have joined A's flight before it fails: a
	// waiter that started after A's session ended would get
	// ErrUnknownAccount instead.
	awaitFlight(t, ctx, e.p, a.UID, 2)
	gA.Open()
	for i, w := range waitersA {
		if res := recv(t, ctx, w); !errors.Is(res.err, pigeon.ErrSessionExpired) {
			t.Fatalf("A's waiter %d: %v, want ErrSessionExpired", i, res.err)
		}
	}
	if st := recv(t, ctx, accts); st != (pigeon.AccountStatus{UID: a.UID, State: pigeon.Unauthenticated}) {
		t.Fatalf("accounts stream %+v, want A Unauthenticated", st)
	}
	h.Release()
	if res := recv(t, ctx, late); !errors.Is(res.err, pigeon.ErrSessionExpired) {
		t.Fatalf("A's late 401: %v, want ErrSessionExpired", res.err)
	}
	gB.Open()
	if res := recv(t, ctx, waiterB); res.err != nil || rowUID(t, res.resp) != b.UID {
		t.Fatalf("B's waiter: %v", res.err)
	}
	if _, err := acctA.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("Account A after its session ended: %v, want ErrUnknownAccount", err)
	}
	if _, err := e.p.As(a.UID); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("As(A) after its session ended: %v, want ErrUnknownAccount", err)
	}
	if r, err := acctB.Get(ctx, "/echo"); err != nil || rowUID(t, r) != b.UID {
		t.Fatalf("B after A's end: %v", err)
	}
	if rec := rowCurrent(t, ctx, e.p); rec.UID != cur.UID {
		t.Fatalf("current account %q, want %q", rec.UID, cur.UID)
	}
	recs, err := e.p.AllAuths(ctx)
	if err != nil || len(recs) != 2 {
		t.Fatalf("AllAuths: %d, %v; want the current account and B", len(recs), err)
	}
	for _, rec := range recs {
		if rec.UID == b.UID && string(rec.AccessToken) == b.AccessToken {
			t.Fatal("B's refresh was not stored on B")
		}
		if rec.UID == cur.UID && string(rec.AccessToken) != cur.AccessToken {
			t.Fatal("the current account's tokens changed")
		}
	}
}

// Item 3, row 9 per account: RemoveAccount(A) while A's refresh runs: its
// result is discarded, A's waiters and late 401 fail with ErrLoggedOut,
// new requests through the Account with ErrUnknownAccount, and B (not
// waiting for A) is served meanwhile.
func TestAccounts_RemoveDuringRefresh(t *testing.T) {
	g := newGate()
	h := newHold(func(r *http.Request) bool { return r.URL.Path == "/echo" && r.Header.Get("X-Hold") != "" })
	e := newEnv(t, envConfig{wrap: h.wrap, backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	acctA, acctB := acctAs(t, e, a.UID), acctAs(t, e, b.UID)
	e.be.ExpireAccessToken(a.AccessToken)

	late := rowGo(ctx, acctA, "/echo", pigeon.WithHeader("X-Hold", "1"))
	recv(t, ctx, h.held)
	waiter := rowGo(ctx, acctA, "/echo")
	viaCtx := rowGo(pigeon.ContextWithAccount(ctx, a.UID), e.p, "/echo")
	recv(t, ctx, g.entered)
	if r, err := acctB.Get(ctx, "/echo"); err != nil || rowUID(t, r) != b.UID {
		t.Fatalf("B during A's refresh: %v", err)
	}
	// Both waiters are in A's flight (the coordinator says so) before A
	// goes: neither can start after the removal.
	awaitFlight(t, ctx, e.p, a.UID, 2)
	if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	g.Open()
	for name, ch := range map[string]<-chan rowResult{"Account": waiter, "ContextWithAccount": viaCtx} {
		if res := recv(t, ctx, ch); !errors.Is(res.err, pigeon.ErrLoggedOut) {
			t.Fatalf("A's waiter (%s): %v, want ErrLoggedOut", name, res.err)
		}
	}
	h.Release()
	if res := recv(t, ctx, late); !errors.Is(res.err, pigeon.ErrLoggedOut) {
		t.Fatalf("A's late 401: %v, want ErrLoggedOut", res.err)
	}
	if _, err := acctA.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("Account A after RemoveAccount: %v, want ErrUnknownAccount", err)
	}
	rowWantCalls(t, e, 1)
	recs, err := e.p.AllAuths(ctx)
	if err != nil || len(recs) != 1 || recs[0].UID != b.UID || string(recs[0].AccessToken) != b.AccessToken {
		t.Fatalf("AllAuths after removing A: %+v, %v; want B alone, unchanged", recs, err)
	}
	if err := e.p.RemoveAccount(ctx, a.UID); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("second RemoveAccount: %v, want ErrUnknownAccount", err)
	}
}

// Item 3, row 10 per account: the current account switches while A's
// refresh runs: the tokens land on A, A's waiters replay as A, requests
// after the switch use the new current account, and no other account's
// tokens change.
func TestAccounts_SwitchDuringAccountRefresh(t *testing.T) {
	g := newGate()
	e := newEnv(t, envConfig{backend: []backend.Option{backend.WithRefreshHook(g.hook)}})
	ctx := ctxT(t)
	c := e.login("c@example.com") // current
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	acctA := acctAs(t, e, a.UID)
	e.be.ExpireAccessToken(a.AccessToken)

	waiter := rowGo(ctx, acctA, "/echo")
	recv(t, ctx, g.entered)
	if err := e.p.SwitchAccount(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.SwitchAccount(ctx, b.UID); err != nil {
		t.Fatal(err)
	}
	if r, err := e.p.Get(ctx, "/echo"); err != nil || rowUID(t, r) != b.UID {
		t.Fatalf("request after the switch: %v, want B", err)
	}
	g.Open()
	res := recv(t, ctx, waiter)
	if res.err != nil || rowUID(t, res.resp) != a.UID {
		t.Fatalf("A's waiter: %v, want replayed as A", res.err)
	}
	rowWantCalls(t, e, 1)
	recs, err := e.p.AllAuths(ctx)
	if err != nil || len(recs) != 3 {
		t.Fatalf("AllAuths: %d, %v", len(recs), err)
	}
	for _, rec := range recs {
		switch rec.UID {
		case a.UID:
			if string(rec.AccessToken) == a.AccessToken {
				t.Fatal("A's refresh was not stored on A")
			}
		case b.UID:
			if string(rec.AccessToken) != b.AccessToken {
				t.Fatal("A's refresh was stored on B")
			}
		case c.UID:
			if string(rec.AccessToken) != c.AccessToken {
				t.Fatal("A's refresh was stored on C")
			}
		}
	}
}

// Item 1: As of an unknown UID is ErrUnknownAccount; an Account's Close
// closes it alone (later calls ErrClosed, its stream closed, the client
// and other Accounts untouched); the client's Close closes every Account.
func TestAccounts_AsAndClose(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxT(t)
	a := acctAdd(t, e, "a@example.com")
	if _, err := e.p.As("nobody"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("As(unknown): %v, want ErrUnknownAccount", err)
	}
	if _, err := e.p.As(""); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf(`As(""): %v, want ErrUnknownAccount`, err)
	}
	one, err := e.p.As(a.UID)
	if err != nil {
		t.Fatal(err)
	}
	two := acctAs(t, e, a.UID)
	if one.UID() != a.UID {
		t.Fatalf("UID() = %q", one.UID())
	}
	sub, err := one.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ctx, sub)
	hc := one.HTTPClient()
	if err := one.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if _, ok := <-sub; ok {
		t.Fatal("stream open after the Account's Close")
	}
	if err := one.Close(); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	if _, err := one.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := acctGetWith(ctx, hc, e.srv.URL+"/echo", ""); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("HTTPClient after Close: %v", err)
	}
	if _, err := one.SubscribeAuth(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SubscribeAuth after Close: %v", err)
	}
	if err := one.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e)}); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SocketInit after Close: %v", err)
	}
	if r, err := two.Get(ctx, "/echo"); err != nil || rowUID(t, r) != a.UID {
		t.Fatalf("the other Account after one's Close: %v", err)
	}
	sub2, err := two.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ctx, sub2)
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub2; ok {
		t.Fatal("Account stream open after the client's Close")
	}
	if _, err := two.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Account Get after the client's Close: %v", err)
	}
	if err := two.Close(); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Account Close after the client's Close: %v, want ErrClosed", err)
	}
	if _, err := e.p.As(a.UID); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("As after Close: %v, want ErrClosed", err)
	}
}

// acctChat reads chat messages from sub until it has one per text in
// want, returning who sent each.
func acctChat(t *testing.T, ctx context.Context, sub *pigeon.Subscription, texts ...string) map[string]string {
	t.Helper()
	from := map[string]string{}
	for len(from) < len(texts) {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription closed: %v", sub.Err())
			}
			var m backend.ChatMessage
			if err := json.Unmarshal(ev.Data, &m); err != nil {
				t.Fatalf("chat message %s: %v", ev.Data, err)
			}
			for _, x := range texts {
				if m.Text == x {
					from[x] = m.From
				}
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %v: %v", texts, ctx.Err())
		}
	}
	return from
}

// Item 2: each Account owns its socket, opened with its account's token;
// a refresh of A reaches A's socket only (one `update`), B's socket keeps
// speaking as B. Removing A stops A's socket, not B's.
func TestAccounts_SocketsGetOnlyTheirOwnTokens(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	ctx := ctxT(t)
	a := acctAdd(t, e, "a@example.com")
	b := acctAdd(t, e, "b@example.com")
	acctA, acctB := acctAs(t, e, a.UID), acctAs(t, e, b.UID)
	subA := joinChat(t, ctx, e, acctA)
	subB := joinChat(t, ctx, e, acctB)
	before := e.be.Stats()
	e.be.ExpireAccessToken(a.AccessToken)
	if _, err := acctA.Get(ctx, "/echo"); err != nil { // 401 → refresh of A
		t.Fatal(err)
	}
	// Acked emits after the refresh: an update sent to either socket is
	// answered before the emit on the same connection.
	if _, err := acctA.EmitWithAck(ctx, "message", map[string]string{"text": "from A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := acctB.EmitWithAck(ctx, "message", map[string]string{"text": "from B"}); err != nil {
		t.Fatal(err)
	}
	after := e.be.Stats()
	if d := after.UpdateFrames - before.UpdateFrames; d != 1 {
		t.Fatalf("%d update frames after A's refresh, want 1 (A's socket only)", d)
	}
	if after.WSTotal != before.WSTotal {
		t.Fatal("a socket reconnected")
	}
	for name, sub := range map[string]*pigeon.Subscription{"A": subA, "B": subB} {
		from := acctChat(t, ctx, sub, "from A", "from B")
		if from["from A"] != a.UID || from["from B"] != b.UID {
			t.Fatalf("socket %s saw senders %v, want A's message from %s and B's from %s", name, from, a.UID, b.UID)
		}
	}
	if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-subA.C; ok {
		// Drain whatever was queued; the subscription must end.
		for range subA.C {
		}
	}
	if err := acctA.Emit(ctx, "message", "x"); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
		t.Fatalf("A's Emit after RemoveAccount: %v, want ErrSocketNotInitialized", err)
	}
	if _, err := acctB.EmitWithAck(ctx, "message", map[string]string{"text": "B still"}); err != nil {
		t.Fatalf("B's socket after A's removal: %v", err)
	}
	// B's session ends by a refused refresh (not through RemoveAccount):
	// B's socket, which follows B's session in the AuthStore, stops
	// with the reason.
	acctRefuse(t, ctx, e, acctB)
	for range subB.C {
	}
	if !errors.Is(subB.Err(), pigeon.ErrSessionExpired) {
		t.Fatalf("B's subscription ended with %v, want ErrSessionExpired", subB.Err())
	}
}

// Item 1: an Account's UpdateHeaders goes with that Account's requests
// only, over the client's default headers and under the request's own.
func TestAccounts_UpdateHeadersOwnOnly(t *testing.T) {
	var got sync.Map // bearer -> "X-Tenant|X-App" of its last request
	e := newEnv(t, envConfig{
		pigeon: []pigeon.Option{pigeon.WithHeaders(map[string]string{"X-Tenant": "default", "X-App": "gw"})},
		wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/echo" {
					got.Store(bearerOf(r), r.Header.Get("X-Tenant")+"|"+r.Header.Get("X-App"))
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	ctx := ctxT(t)
	cur := e.login("current@example.com")
	a := acctAdd(t, e, "a@example.com")
	acct := acctAs(t, e, a.UID)
	acct.UpdateHeaders(map[string]string{"X-Tenant": "a-tenant"})
	if _, err := acct.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{a.AccessToken: "a-tenant|gw", cur.AccessToken: "default|gw"}
	for tok, w := range want {
		if v, _ := got.Load(tok); v != w {
			t.Fatalf("headers seen %v, want %q", v, w)
		}
	}
	if _, err := acct.Get(ctx, "/echo", pigeon.WithHeader("X-Tenant", "own")); err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Load(a.AccessToken); v != "own|gw" {
		t.Fatalf("request's own header lost: %v", v)
	}
	acct.UpdateHeaders(map[string]string{"X-Tenant": ""})
	if _, err := acct.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Load(a.AccessToken); v != "default|gw" {
		t.Fatalf("after removing the Account's header: %v", v)
	}
}

// Item 1: an Account's Close cancels its requests in flight with ErrClosed;
// the client's own requests, held at the same server, are not touched.
func TestAccounts_CloseEndsItsRequestsInFlight(t *testing.T) {
	hA := newHold(func(r *http.Request) bool { return r.Header.Get("X-Hold") == "a" })
	hCur := newHold(func(r *http.Request) bool { return r.Header.Get("X-Hold") == "cur" })
	e := newEnv(t, envConfig{wrap: rowChain(hA.wrap, hCur.wrap)})
	ctx := ctxT(t)
	cur := e.login("current@example.com")
	a := acctAdd(t, e, "a@example.com")
	acct, err := e.p.As(a.UID)
	if err != nil {
		t.Fatal(err)
	}
	inA := rowGo(ctx, acct, "/echo", pigeon.WithHeader("X-Hold", "a"))
	recv(t, ctx, hA.held)
	inCur := rowGo(ctx, e.p, "/echo", pigeon.WithHeader("X-Hold", "cur"))
	recv(t, ctx, hCur.held)
	if err := acct.Close(); err != nil {
		t.Fatal(err)
	}
	if res := recv(t, ctx, inA); !errors.Is(res.err, pigeon.ErrClosed) {
		t.Fatalf("the Account's request in flight: %v, want ErrClosed", res.err)
	}
	hA.Release()
	hCur.Release()
	if res := recv(t, ctx, inCur); res.err != nil || rowUID(t, res.resp) != cur.UID {
		t.Fatalf("the client's request in flight: %v", res.err)
	}
}
