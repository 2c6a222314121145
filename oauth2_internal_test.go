package pigeon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests call OAuth2Refresher.RefreshToken directly with a
// RefreshClient over a real loopback connection to an httptest token
// endpoint; oauth2_test.go drives the same refresher through an
// AuthorizedPigeon.

var oauthNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// tokenCall is what the token endpoint saw of one request.
type tokenCall struct {
	basicID, basicSecret string // from the Authorization header, decoded
	header               bool   // an Authorization header was sent
	form                 url.Values
}

// tokenEndpoint is an httptest token endpoint that records every request
// and answers with answer (nil: a token response).
type tokenEndpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []tokenCall
	answer func(n int, c tokenCall, w http.ResponseWriter) // n counts from 1
}

func newTokenEndpoint(t *testing.T, answer func(n int, c tokenCall, w http.ResponseWriter)) *tokenEndpoint {
	t.Helper()
	e := &tokenEndpoint{answer: answer}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c tokenCall
		_, c.header = r.Header["Authorization"]
		if id, secret, ok := r.BasicAuth(); ok {
			c.basicID, _ = url.QueryUnescape(id)
			c.basicSecret, _ = url.QueryUnescape(secret)
		}
		_ = r.ParseForm()
		c.form = r.PostForm
		e.mu.Lock()
		e.calls = append(e.calls, c)
		n := len(e.calls)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if e.answer != nil {
			e.answer(n, c, w)
			return
		}
		_, _ = io.WriteString(w, `{"access_token":"at","refresh_token":"rt2","token_type":"Bearer","expires_in":60}`)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *tokenEndpoint) seen() []tokenCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]tokenCall(nil), e.calls...)
}

func newTestRefreshClient(t *testing.T) *RefreshClient {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &RefreshClient{core: &httpCore{client: &http.Client{Transport: tr}}, now: func() time.Time { return oauthNow }}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Every error answer of the token endpoint is an *OAuth2Error with its
// code, description and status; invalid_grant matches ErrRefreshRejected,
// the configuration codes ErrRefreshMisconfigured, the rest neither; the
// message says code and description; nothing is resent after an answer.
func TestOAuth2Error_EveryAnswer(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		code, desc string
		rejected   bool
		misconf    bool
		inMessage  string
	}{
		{"invalid_grant 400", 400, `{"error":"invalid_grant","error_description":"refresh token already used"}`, "invalid_grant", "refresh token already used", true, false, "400 invalid_grant: refresh token already used"},
		{"invalid_grant 401", 401, `{"error":"invalid_grant"}`, "invalid_grant", "", true, false, "401 invalid_grant"},
		{"invalid_client", 401, `{"error":"invalid_client","error_description":"client authentication failed"}`, "invalid_client", "client authentication failed", false, true, "401 invalid_client: client authentication failed"},
		{"unauthorized_client", 400, `{"error":"unauthorized_client","error_description":"refresh_token not allowed"}`, "unauthorized_client", "refresh_token not allowed", false, true, "400 unauthorized_client: refresh_token not allowed"},
		{"invalid_scope", 400, `{"error":"invalid_scope","error_description":"scope admin not granted"}`, "invalid_scope", "scope admin not granted", false, true, "400 invalid_scope: scope admin not granted"},
		{"invalid_request", 400, `{"error":"invalid_request","error_description":"missing refresh_token"}`, "invalid_request", "missing refresh_token", false, true, "400 invalid_request: missing refresh_token"},
		{"unsupported_grant_type", 400, `{"error":"unsupported_grant_type"}`, "unsupported_grant_type", "", false, true, "400 unsupported_grant_type"},
		{"temporarily_unavailable", 503, `{"error":"temporarily_unavailable","error_description":"try later"}`, "temporarily_unavailable", "try later", false, false, "503 temporarily_unavailable: try later"},
		{"unknown code", 400, `{"error":"slow_down"}`, "slow_down", "", false, false, "400 slow_down"},
		{"HTML 500", 500, "<html>\n<body>Internal Server Error</body></html>", "", "", false, false, "500 without an OAuth2 error: <html> <body>Internal Server Error</body></html>"},
		{"plain-text 400", 400, "bad request", "", "", false, false, "400 without an OAuth2 error: bad request"},
		{"empty 502", 502, "", "", "", false, false, "502 without an OAuth2 error"},
		{"200 with an error", 200, `{"error":"bad_refresh_token","error_description":"The refresh token is invalid."}`, "bad_refresh_token", "The refresh token is invalid.", false, false, "200 bad_refresh_token: The refresh token is invalid."},
		{"200 not JSON", 200, `<html>ok</html>`, "", "malformed token response: invalid character '<' looking for beginning of value", false, false, "200: malformed token response"},
		{"200 without access_token", 200, `{"token_type":"Bearer"}`, "", "token response has no access_token", false, false, "200: token response has no access_token"},
		{"bad expires_in", 200, `{"access_token":"a","expires_in":"soon"}`, "", `bad expires_in "soon"`, false, false, `200: bad expires_in "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := newTokenEndpoint(t, func(_ int, _ tokenCall, w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			o := OAuth2Refresher{TokenURL: ep.srv.URL + "/token?tenant=x", ClientID: "app", ClientSecret: "s", AuthStyle: AuthStyleInHeader}
			_, err := o.RefreshToken(testCtx(t), "rt-secret", newTestRefreshClient(t))
			var oe *OAuth2Error
			if !errors.As(err, &oe) {
				t.Fatalf("no *OAuth2Error in %v", err)
			}
			if oe.Code != tc.code || oe.Description != tc.desc || oe.StatusCode != tc.status {
				t.Fatalf("got %+v, want code %q description %q status %d", oe, tc.code, tc.desc, tc.status)
			}
			if errors.Is(err, ErrRefreshRejected) != tc.rejected || errors.Is(err, ErrRefreshMisconfigured) != tc.misconf {
				t.Fatalf("rejected %v misconfigured %v, want %v %v: %v", errors.Is(err, ErrRefreshRejected), errors.Is(err, ErrRefreshMisconfigured), tc.rejected, tc.misconf, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.inMessage) || !strings.Contains(msg, `client "app"`) || !strings.Contains(msg, ep.srv.URL+"/token, ") {
				t.Fatalf("message %q lacks %q, the client or the URL", msg, tc.inMessage)
			}
			if strings.Contains(msg, "rt-secret") || strings.Contains(msg, "tenant") {
				t.Fatalf("message %q shows the refresh token or the query", msg)
			}
			if n := len(ep.seen()); n != 1 {
				t.Fatalf("%d requests, want 1: nothing is resent after an answer", n)
			}
		})
	}
}

// Where the client credentials go for each AuthStyle, and a public client.
func TestOAuth2Refresher_AuthStyles(t *testing.T) {
	tests := []struct {
		name             string
		style            AuthStyle
		id, secret       string
		header           bool
		basicID, basicPW string
		bodyID, bodySec  string
	}{
		{"in header", AuthStyleInHeader, "app id", "s3cret:x", true, "app id", "s3cret:x", "", ""},
		{"in params", AuthStyleInParams, "app id", "s3cret:x", false, "", "", "app id", "s3cret:x"},
		{"auto-detect: header first", AuthStyleAutoDetect, "app", "s", true, "app", "s", "", ""},
		{"public, auto-detect", AuthStyleAutoDetect, "spa", "", false, "", "", "spa", ""},
		{"public, in header", AuthStyleInHeader, "spa", "", false, "", "", "spa", ""},
		{"no client", AuthStyleAutoDetect, "", "", false, "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := newTokenEndpoint(t, nil)
			o := OAuth2Refresher{TokenURL: ep.srv.URL + "/token", ClientID: tc.id, ClientSecret: tc.secret, AuthStyle: tc.style, Scopes: []string{"a", "b"}}
			got, err := o.RefreshToken(testCtx(t), "rt1", newTestRefreshClient(t))
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessToken != "at" || got.RefreshToken != "rt2" || !got.ExpiresAt.Equal(oauthNow.Add(time.Minute)) {
				t.Fatalf("answer read as %+v", got)
			}
			seen := ep.seen()
			if len(seen) != 1 {
				t.Fatalf("%d requests, want 1", len(seen))
			}
			c := seen[0]
			if c.header != tc.header || c.basicID != tc.basicID || c.basicSecret != tc.basicPW {
				t.Fatalf("Authorization: sent %v, basic %q:%q; want %v %q:%q", c.header, c.basicID, c.basicSecret, tc.header, tc.basicID, tc.basicPW)
			}
			if _, has := c.form["client_id"]; has != (tc.bodyID != "") || c.form.Get("client_id") != tc.bodyID {
				t.Fatalf("body client_id %q, want %q", c.form.Get("client_id"), tc.bodyID)
			}
			if _, has := c.form["client_secret"]; has != (tc.bodySec != "") || c.form.Get("client_secret") != tc.bodySec {
				t.Fatalf("body client_secret %q, want %q", c.form.Get("client_secret"), tc.bodySec)
			}
			if c.form.Get("grant_type") != "refresh_token" || c.form.Get("refresh_token") != "rt1" || c.form.Get("scope") != "a b" {
				t.Fatalf("form %v", c.form)
			}
		})
	}
}

// Auto-detect against an endpoint that wants the credentials in the body:
// the header is tried, then the body; the body is remembered for that
// endpoint and client, so the next refresh sends one request. Another
// client of the same RefreshClient probes on its own.
func TestOAuth2Refresher_AutoDetectFallsBackAndRemembers(t *testing.T) {
	ep := newTokenEndpoint(t, func(_ int, c tokenCall, w http.ResponseWriter) {
		if c.header {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"client_secret_basic is not allowed"}`)
			return
		}
		_, _ = io.WriteString(w, `{"access_token":"at"}`)
	})
	rc := newTestRefreshClient(t)
	ctx := testCtx(t)
	where := func() string {
		var b []string
		for _, c := range ep.seen() {
			switch {
			case c.header:
				b = append(b, c.basicID+":header")
			default:
				b = append(b, c.form.Get("client_id")+":body")
			}
		}
		return strings.Join(b, ",")
	}
	a := OAuth2Refresher{TokenURL: ep.srv.URL + "/token", ClientID: "a", ClientSecret: "sa"}
	for range 2 {
		if _, err := a.RefreshToken(ctx, "rt", rc); err != nil {
			t.Fatal(err)
		}
	}
	b := OAuth2Refresher{TokenURL: ep.srv.URL + "/token", ClientID: "b", ClientSecret: "sb"}
	if _, err := b.RefreshToken(ctx, "rt", rc); err != nil {
		t.Fatal(err)
	}
	if got, want := where(), "a:header,a:body,a:body,b:header,b:body"; got != want {
		t.Fatalf("requests %s, want %s", got, want)
	}
	// A new RefreshClient (a new AuthorizedPigeon) knows nothing yet.
	if _, err := a.RefreshToken(ctx, "rt", newTestRefreshClient(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := where(), "a:header,a:body,a:body,b:header,b:body,a:header,a:body"; got != want {
		t.Fatalf("requests %s, want %s", got, want)
	}
}

// Auto-detect falls back only when the client was refused: invalid_grant
// (the client authenticated, the token did not) and 5xx send one request;
// invalid_grant remembers the header, a 5xx remembers nothing. When both
// places are refused the error says both answers.
func TestOAuth2Refresher_AutoDetectOnlyOnRefusedClient(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string // where the requests of two refreshes went
		msg    string
	}{
		{"invalid_grant", 400, `{"error":"invalid_grant"}`, "header,header", "400 invalid_grant"},
		{"server error", 500, `{"error":"server_error"}`, "header,header", "500 server_error"},
		{"refused everywhere", 401, `{"error":"invalid_client","error_description":"unknown client"}`, "header,body,header,body",
			"credentials in the body: pigeon: token endpoint answered 401 invalid_client: unknown client (with the credentials in the Authorization header: pigeon: token endpoint answered 401 invalid_client: unknown client)"},
		{"401 without a body", 401, ``, "header,body,header,body", "401 without an OAuth2 error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := newTokenEndpoint(t, func(_ int, _ tokenCall, w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			rc := newTestRefreshClient(t)
			o := OAuth2Refresher{TokenURL: ep.srv.URL, ClientID: "app", ClientSecret: "s"}
			for range 2 {
				_, err := o.RefreshToken(testCtx(t), "rt", rc)
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v, want one saying %q", err, tc.msg)
				}
			}
			var got []string
			for _, c := range ep.seen() {
				if c.header {
					got = append(got, "header")
				} else {
					got = append(got, "body")
				}
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("requests %v, want %s", got, tc.want)
			}
		})
	}
}

// A request that got no answer (the connection closed before the answer)
// is sent once more with the same refresh token; a server with a reuse
// interval answers it. Two lost answers are a transient error, after
// exactly two requests.
func TestOAuth2Refresher_LostAnswerResentOnce(t *testing.T) {
	tests := []struct {
		name  string
		drops int // how many requests lose their answer
		ok    bool
	}{
		{"one lost answer", 1, true},
		{"every answer lost", 99, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := newTokenEndpoint(t, func(n int, c tokenCall, w http.ResponseWriter) {
				if n <= tc.drops {
					// the server rotated the token, then the answer was lost
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						_ = conn.Close()
					}
					return
				}
				_, _ = io.WriteString(w, `{"access_token":"at","refresh_token":"rt2"}`)
			})
			got, err := OAuth2Refresher{TokenURL: ep.srv.URL, ClientID: "app"}.RefreshToken(testCtx(t), "rt1", newTestRefreshClient(t))
			seen := ep.seen()
			if len(seen) != 2 || seen[0].form.Get("refresh_token") != "rt1" || seen[1].form.Get("refresh_token") != "rt1" {
				t.Fatalf("requests %+v, want two with rt1", seen)
			}
			if tc.ok {
				if err != nil || got.RefreshToken != "rt2" {
					t.Fatalf("got %+v, %v", got, err)
				}
				return
			}
			var oe *OAuth2Error
			if err == nil || errors.As(err, &oe) || errors.Is(err, ErrRefreshRejected) || errors.Is(err, ErrRefreshMisconfigured) || !strings.Contains(err.Error(), "twice with the same refresh token") {
				t.Fatalf("want a transient no-answer error, got %v", err)
			}
		})
	}
}

// A refresh whose context ended is not resent.
func TestOAuth2Refresher_CancelledNotResent(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	ep := newTokenEndpoint(t, func(_ int, _ tokenCall, w http.ResponseWriter) {
		cancel()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	_, err := OAuth2Refresher{TokenURL: ep.srv.URL, ClientID: "app"}.RefreshToken(ctx, "rt1", newTestRefreshClient(t))
	if err == nil || len(ep.seen()) != 1 {
		t.Fatalf("%d requests, error %v; want 1 and an error", len(ep.seen()), err)
	}
}

func TestOAuth2Refresher_BadTokenURL(t *testing.T) {
	for _, u := range []string{"", "/token", "://x"} {
		_, err := OAuth2Refresher{TokenURL: u}.RefreshToken(testCtx(t), "rt", newTestRefreshClient(t))
		if err == nil || !strings.Contains(err.Error(), "not an absolute URL") {
			t.Fatalf("TokenURL %q: %v", u, err)
		}
	}
}
