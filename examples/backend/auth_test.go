package backend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSignupLoginMe(t *testing.T) {
	b, srv := newServer(t)
	tok := signup(t, srv, "Ann@Example.com")
	if tok.UID == "" || tok.AccessToken == "" || tok.RefreshToken == "" || tok.ExpiresAt.IsZero() {
		t.Fatalf("incomplete tokens: %+v", tok)
	}

	r := call(t, srv, "GET", "/me", tok.AccessToken, nil)
	if r.status != http.StatusOK {
		t.Fatalf("/me: %d %s", r.status, r.body)
	}
	var me meAnswer
	r.data(t, &me)
	if me.UID != tok.UID || me.Email != "ann@example.com" {
		t.Fatalf("/me = %+v, want uid %s", me, tok.UID)
	}

	r = call(t, srv, "POST", "/auth/login", "", map[string]string{"email": "ann@example.com", "password": "pw-Ann@Example.com"})
	if r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	var login Tokens
	r.data(t, &login)
	if login.UID != tok.UID || login.AccessToken == tok.AccessToken || login.RefreshToken == tok.RefreshToken {
		t.Fatalf("login tokens %+v, signup %+v", login, tok)
	}
	st := b.Stats()
	if st.Signups != 1 || st.Logins != 1 || st.Requests["/me"] != 1 || st.Requests["/auth/login"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestExpiresAtIsRFC3339Nano(t *testing.T) {
	clock := newFakeClock()
	_, srv := newServer(t, WithClock(clock.Now), WithAccessTTL(90*time.Second))
	r := call(t, srv, "POST", "/auth/signup", "", map[string]string{"email": "a@x", "password": "p"})
	var raw struct {
		ExpiresAt string `json:"expiresAt"`
	}
	r.data(t, &raw)
	got, err := time.Parse(time.RFC3339Nano, raw.ExpiresAt)
	if err != nil {
		t.Fatalf("expiresAt %q: %v", raw.ExpiresAt, err)
	}
	if want := clock.Now().Add(90 * time.Second); !got.Equal(want) {
		t.Fatalf("expiresAt = %v, want %v", got, want)
	}
}

func TestAuthErrors(t *testing.T) {
	_, srv := newServer(t)
	signup(t, srv, "taken@x")
	cases := []struct {
		name       string
		method     string
		path       string
		token      string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"signup duplicate", "POST", "/auth/signup", "", map[string]string{"email": "TAKEN@x", "password": "p"}, 409, "email_taken"},
		{"signup not json", "POST", "/auth/signup", "", "{nope", 400, "bad_request"},
		{"signup missing password", "POST", "/auth/signup", "", map[string]string{"email": "b@x"}, 400, "bad_request"},
		{"login wrong password", "POST", "/auth/login", "", map[string]string{"email": "taken@x", "password": "bad"}, 401, "invalid_credentials"},
		{"login unknown email", "POST", "/auth/login", "", map[string]string{"email": "who@x", "password": "p"}, 401, "invalid_credentials"},
		{"login not json", "POST", "/auth/login", "", "[", 400, "bad_request"},
		{"refresh unknown", "POST", "/auth/refresh", "", map[string]string{"refreshToken": "nope"}, 401, "invalid_grant"},
		{"refresh empty", "POST", "/auth/refresh", "", map[string]string{}, 400, "invalid_request"},
		{"refresh not json", "POST", "/auth/refresh", "", "x", 400, "bad_request"},
		{"me without token", "GET", "/me", "", nil, 401, "invalid_token"},
		{"me unknown token", "GET", "/me", "garbage", nil, 401, "invalid_token"},
		{"echo without token", "GET", "/echo", "", nil, 401, "invalid_token"},
		{"unknown path", "GET", "/nope", "", nil, 404, "not_found"},
		{"wrong method", "GET", "/auth/login", "", nil, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, srv, tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.wantStatus || r.errCode(t) != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.wantStatus, tc.wantCode)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			if tc.wantStatus == 401 && tc.wantCode == "invalid_token" {
				if h := r.header.Get("WWW-Authenticate"); h != `Bearer error="invalid_token"` {
					t.Fatalf("WWW-Authenticate = %q", h)
				}
			}
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	b, srv := newServer(t)
	tok := signup(t, srv, "r@x")

	r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	var got refreshAnswer
	r.data(t, &got)
	if got.AccessToken == "" || got.RefreshToken == "" || got.RefreshToken == tok.RefreshToken || got.AccessToken == tok.AccessToken {
		t.Fatalf("refresh answer %+v does not rotate %+v", got, tok)
	}
	if r := call(t, srv, "GET", "/me", got.AccessToken, nil); r.status != http.StatusOK {
		t.Fatalf("/me with refreshed token: %d", r.status)
	}

	// Reusing the rotated-away token is rejected.
	r = call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
	if r.status != http.StatusUnauthorized || r.errCode(t) != "invalid_grant" {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	// The new one still works once.
	r = call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": got.RefreshToken})
	if r.status != http.StatusOK {
		t.Fatalf("second refresh: %d %s", r.status, r.body)
	}
	st := b.Stats()
	if st.RefreshCalls != 3 || st.RefreshSucceeded != 2 || st.RefreshRejected != 1 {
		t.Fatalf("stats: calls %d ok %d rejected %d", st.RefreshCalls, st.RefreshSucceeded, st.RefreshRejected)
	}
}

func TestAccessTokenExpiresWithInjectedClock(t *testing.T) {
	clock := newFakeClock()
	_, srv := newServer(t, WithClock(clock.Now), WithAccessTTL(time.Minute))
	tok := signup(t, srv, "e@x")
	clock.Advance(59 * time.Second)
	if r := call(t, srv, "GET", "/me", tok.AccessToken, nil); r.status != http.StatusOK {
		t.Fatalf("before expiry: %d", r.status)
	}
	clock.Advance(time.Second)
	r := call(t, srv, "GET", "/me", tok.AccessToken, nil)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("at expiry: %d %v", r.status, r.header)
	}
	r = call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
	var got refreshAnswer
	r.data(t, &got)
	if want := clock.Now().Add(time.Minute); !got.ExpiresAt.Equal(want) {
		t.Fatalf("new expiresAt %v, want %v", got.ExpiresAt, want)
	}
	if r := call(t, srv, "GET", "/me", got.AccessToken, nil); r.status != http.StatusOK {
		t.Fatalf("after refresh: %d", r.status)
	}
}

func TestRefreshTokenTTL(t *testing.T) {
	clock := newFakeClock()
	_, srv := newServer(t, WithClock(clock.Now), WithRefreshTTL(time.Hour))
	tok := signup(t, srv, "rt@x")
	clock.Advance(time.Hour)
	r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
	if r.status != http.StatusUnauthorized || r.errCode(t) != "invalid_grant" {
		t.Fatalf("expired refresh: %d %s", r.status, r.body)
	}
}

func TestStress_ParallelRefreshOfOneToken(t *testing.T) {
	b, srv := newServer(t)
	tok := signup(t, srv, "p@x")
	const n = 64
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			statuses <- call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken}).status
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[200] != 1 || count[401] != n-1 {
		t.Fatalf("statuses = %v, want exactly one 200 and %d 401", count, n-1)
	}
	if st := b.Stats(); st.RefreshCalls != n || st.RefreshSucceeded != 1 || st.RefreshRejected != n-1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTestHelpers(t *testing.T) {
	b, srv := newServer(t)
	tok, err := b.IssueTokens("alice")
	if err != nil {
		t.Fatal(err)
	}
	r := call(t, srv, "GET", "/me", tok.AccessToken, nil)
	var me meAnswer
	r.data(t, &me)
	if me.UID != "alice" {
		t.Fatalf("/me uid = %q", me.UID)
	}
	if _, err := b.IssueTokens(" "); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("IssueTokens(blank) err = %v", err)
	}
	if !b.ExpireAccessToken(tok.AccessToken) || b.ExpireAccessToken("nope") {
		t.Fatal("ExpireAccessToken reported wrongly")
	}
	if r := call(t, srv, "GET", "/me", tok.AccessToken, nil); r.status != 401 {
		t.Fatalf("expired: %d", r.status)
	}
	tok2, _ := b.IssueTokens("alice")
	if !b.RevokeAccessToken(tok2.AccessToken) {
		t.Fatal("RevokeAccessToken: unknown")
	}
	if r := call(t, srv, "GET", "/me", tok2.AccessToken, nil); r.status != 401 {
		t.Fatalf("revoked: %d", r.status)
	}
	if !b.RevokeRefreshToken(tok2.RefreshToken) || b.RevokeRefreshToken(tok2.RefreshToken) {
		t.Fatal("RevokeRefreshToken reported wrongly")
	}
	if r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok2.RefreshToken}); r.status != 401 {
		t.Fatalf("revoked refresh: %d", r.status)
	}
	u, err := b.CreateUser("c@x", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateUser("C@x", "pw"); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("duplicate CreateUser err = %v", err)
	}
	r = call(t, srv, "POST", "/auth/login", "", map[string]string{"email": "c@x", "password": "pw"})
	var login Tokens
	r.data(t, &login)
	if login.UID != u.UID {
		t.Fatalf("login uid %q, want %q", login.UID, u.UID)
	}
	// A passwordless user made by IssueTokens cannot log in.
	if r := call(t, srv, "POST", "/auth/login", "", map[string]string{"email": "alice@users.invalid", "password": ""}); r.status != 401 {
		t.Fatalf("passwordless login: %d", r.status)
	}
}

func TestLogoutRevokes(t *testing.T) {
	b, srv := newServer(t)
	tok := signup(t, srv, "l@x")
	if r := call(t, srv, "POST", "/auth/logout", tok.AccessToken, map[string]string{"refreshToken": tok.RefreshToken}); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken}); r.status != 401 {
		t.Fatalf("refresh after logout: %d", r.status)
	}
	if r := call(t, srv, "GET", "/me", tok.AccessToken, nil); r.status != 401 {
		t.Fatalf("/me after logout: %d", r.status)
	}
	if b.Stats().Logouts != 1 {
		t.Fatal("logout not counted")
	}
}

func TestRefreshHookAnswers(t *testing.T) {
	var mu sync.Mutex
	failures := 1
	b, srv := newServer(t, WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if failures == 0 {
			return false
		}
		failures--
		writeError(w, http.StatusServiceUnavailable, "unavailable", "injected")
		return true
	}))
	tok := signup(t, srv, "h@x")
	body := map[string]string{"refreshToken": tok.RefreshToken}
	if r := call(t, srv, "POST", "/auth/refresh", "", body); r.status != http.StatusServiceUnavailable {
		t.Fatalf("hooked: %d", r.status)
	}
	// The hooked call did not consume the token.
	if r := call(t, srv, "POST", "/auth/refresh", "", body); r.status != http.StatusOK {
		t.Fatalf("after hook: %d %s", r.status, r.body)
	}
	if st := b.Stats(); st.RefreshCalls != 2 || st.RefreshSucceeded != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRefreshHookHangEndsWhenClientLeaves(t *testing.T) {
	entered := make(chan struct{}, 1)
	hookDone := make(chan error, 1)
	_, srv := newServer(t, WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
		entered <- struct{}{}
		<-r.Context().Done()
		hookDone <- r.Context().Err()
		return true
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/auth/refresh", strings.NewReader(`{"refreshToken":"x"}`))
	errc := make(chan error, 1)
	go func() {
		res, err := srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client err = %v", err)
	}
	if err := <-hookDone; err == nil {
		t.Fatal("hook context not done")
	}
}

func TestRefreshHookHangEndsOnClose(t *testing.T) {
	entered := make(chan struct{}, 1)
	b, srv := newServer(t, WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
		entered <- struct{}{}
		<-r.Context().Done()
		writeError(w, http.StatusServiceUnavailable, "closing", "backend closed")
		return true
	}))
	statusc := make(chan int, 1)
	go func() {
		statusc <- call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": "x"}).status
	}()
	<-entered
	b.Close()
	if s := <-statusc; s != http.StatusServiceUnavailable {
		t.Fatalf("status = %d", s)
	}
}

func TestJWTAccessTokens(t *testing.T) {
	clock := newFakeClock()
	_, srv := newServer(t, WithJWTAccessTokens(), WithClock(clock.Now), WithAccessTTL(10*time.Minute))
	tok := signup(t, srv, "j@x")
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not JWT-shaped", tok.AccessToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != tok.UID || claims.Exp != tok.ExpiresAt.Unix() || claims.Exp != clock.Now().Add(10*time.Minute).Unix() {
		t.Fatalf("claims %+v, tokens %+v", claims, tok)
	}
	if r := call(t, srv, "GET", "/me", tok.AccessToken, nil); r.status != 200 {
		t.Fatalf("/me: %d", r.status)
	}
}

func TestEcho(t *testing.T) {
	b, srv := newServer(t)
	tok := signup(t, srv, "echo@x")
	r := call(t, srv, "GET", "/echo?x=1", tok.AccessToken, nil)
	var ans EchoAnswer
	r.data(t, &ans)
	if !ans.OK || ans.UID != tok.UID || ans.Query != "x=1" || ans.Method != "GET" {
		t.Fatalf("/echo = %+v", ans)
	}
	r = call(t, srv, "POST", "/public/echo", "", `{"hello":1}`)
	ans = EchoAnswer{}
	r.data(t, &ans)
	if !ans.OK || ans.UID != "" || ans.Body != `{"hello":1}` {
		t.Fatalf("/public/echo = %+v", ans)
	}
	if st := b.Stats(); st.Requests["/echo"] != 1 || st.Requests["/public/echo"] != 1 {
		t.Fatalf("requests = %v", st.Requests)
	}
}
