package pigeon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/internal/nodepeer"
)

// oidcClient is one client registered in testdata/oidc/server.js.
type oidcClient struct{ id, secret, method string }

var oidcClients = []oidcClient{
	{"public", "", "none"},
	{"basic", "basic-secret", "client_secret_basic"},
	{"post", "post-secret", "client_secret_post"},
}

// tokenSeen is one request the logging proxy passed to the token endpoint.
type tokenSeen struct {
	where        string // "header", "body" or "public" (client_id only)
	refreshToken string
	status       int
	code         string // the answer's OAuth2 error, if any
}

// tokenProxy is a logging reverse proxy in front of the provider's token
// endpoint: pigeon's TokenURL points at it, so the test counts what pigeon
// sent and what the provider answered.
type tokenProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []tokenSeen
}

func newTokenProxy(t *testing.T, issuer string) *tokenProxy {
	target, err := url.Parse(issuer)
	if err != nil {
		t.Fatal(err)
	}
	p := &tokenProxy{}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: tr,
		ModifyResponse: func(resp *http.Response) error {
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			s := resp.Request.Context().Value(seenKey{}).(*tokenSeen)
			s.status, s.code = resp.StatusCode, e.Error
			return err
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		s := &tokenSeen{refreshToken: form.Get("refresh_token")}
		switch {
		case r.Header.Get("Authorization") != "":
			s.where = "header"
		case form.Get("client_secret") != "":
			s.where = "body"
		default:
			s.where = "public"
		}
		rp.ServeHTTP(w, r.WithContext(contextWith(r, s)))
		p.mu.Lock()
		p.seen = append(p.seen, *s)
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

type seenKey struct{}

func contextWith(r *http.Request, s *tokenSeen) context.Context {
	return context.WithValue(r.Context(), seenKey{}, s)
}

// take returns what the proxy saw since the last take.
func (p *tokenProxy) take() []tokenSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.seen
	p.seen = nil
	return s
}

// oidcFlow scripts the provider's authorization-code flow with PKCE for c
// (the provider's interaction signs in "test-user" and consents), and
// returns the first access and refresh tokens.
func oidcFlow(t *testing.T, hc *http.Client, issuer string, c oidcClient) (access, refresh string) {
	t.Helper()
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	verifier := base64.RawURLEncoding.EncodeToString(buf)
	sum := sha256.Sum256([]byte(verifier))
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Transport: hc.Transport, Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "127.0.0.1" && req.URL.Path == "/cb" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	q := url.Values{
		"client_id": {c.id}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1/cb"}, "scope": {"openid"},
		"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	resp, err := browser.Get(issuer + "/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("authorization ended at %d %q, want a redirect to the callback with a code", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {verifier}}
	var ans struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	oidcPost(t, hc, issuer+"/token", c, form, &ans)
	if ans.AccessToken == "" || ans.RefreshToken == "" {
		t.Fatalf("code exchange answered %+v", ans)
	}
	return ans.AccessToken, ans.RefreshToken
}

// oidcPost posts form to the provider with c's client authentication and
// decodes the JSON answer into out (nil: the answer's status is returned
// with its error code).
func oidcPost(t *testing.T, hc *http.Client, u string, c oidcClient, form url.Values, out any) (int, string) {
	t.Helper()
	switch c.method {
	case "client_secret_post":
		form.Set("client_id", c.id)
		form.Set("client_secret", c.secret)
	case "none":
		form.Set("client_id", c.id)
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.method == "client_secret_basic" {
		req.SetBasicAuth(c.id, c.secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if out != nil {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", u, resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("POST %s: %v: %s", u, err, body)
		}
	}
	return resp.StatusCode, e.Error
}

func wheres(s []tokenSeen) string {
	var b []string
	for _, x := range s {
		b = append(b, x.where+" "+http.StatusText(x.status)+" "+x.code)
	}
	return strings.Join(b, "; ")
}

// pigeon against node-oidc-provider (OpenID Certified, from npm), started
// from testdata/oidc: the real authorization-code flow gives the first
// tokens; then an AuthorizedPigeon with OAuth2Refresher refreshes through
// the provider's rotation and reuse detection, for a public, a
// client_secret_basic and a client_secret_post client.
func TestOAuth2Interop_NodeOIDCProvider(t *testing.T) {
	issuer := "http://127.0.0.1:" + nodepeer.Start(t, "testdata/oidc", "oidc-provider")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	proxy := newTokenProxy(t, issuer)

	// newPigeon signs c in with the code flow and returns a client that
	// refreshes through the proxy.
	newPigeon := func(t *testing.T, c oidcClient, secret string) (*pigeon.AuthorizedPigeon, string) {
		at, rt := oidcFlow(t, hc, issuer, c)
		p, err := pigeon.NewAuthorized(pigeon.OAuth2Refresher{TokenURL: proxy.srv.URL + "/token", ClientID: c.id, ClientSecret: secret},
			pigeon.WithBaseURL(issuer), pigeon.WithInMemoryStore(), pigeon.WithLogger(zaptest.NewLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		if err := p.SaveNewAuth(ctxT(t), pigeon.SaveAuthParams{UID: "test-user", AccessToken: at, RefreshToken: rt}); err != nil {
			t.Fatal(err)
		}
		proxy.take()
		return p, rt
	}
	// userinfo asks the provider who the bearer is: a real token check.
	userinfo := func(t *testing.T, p *pigeon.AuthorizedPigeon) error {
		r, err := p.Get(ctxT(t), "/me")
		if err != nil {
			return err
		}
		var me struct {
			Sub string `json:"sub"`
		}
		if err := r.Decode(&me); err != nil || me.Sub != "test-user" {
			t.Fatalf("userinfo %s (%v)", r.Body, err)
		}
		return nil
	}
	// staleAccess replaces the stored access token with one the provider
	// does not know (revoking it would revoke the whole grant), so the next
	// request's 401 makes pigeon refresh with the stored refresh token.
	staleAccess := func(t *testing.T, p *pigeon.AuthorizedPigeon) pigeon.AuthRecord {
		cur, err := p.CurrentAuth(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SaveNewAuth(ctxT(t), pigeon.SaveAuthParams{UID: "test-user", AccessToken: "stale", RefreshToken: string(cur.RefreshToken)}); err != nil {
			t.Fatal(err)
		}
		return cur
	}

	// Each refresh rotates the refresh token; the credentials go where the
	// client is registered; auto-detect tries the header, falls back to the
	// body for "post" and remembers it.
	wantSeen := map[string][]string{
		"public": {"public OK ", "public OK "},
		"basic":  {"header OK ", "header OK "},
		"post":   {"header Unauthorized invalid_client; body OK ", "body OK "},
	}
	for _, c := range oidcClients {
		t.Run("rotation/"+c.id, func(t *testing.T) {
			p, rt := newPigeon(t, c, c.secret)
			if err := userinfo(t, p); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				before := staleAccess(t, p)
				if err := userinfo(t, p); err != nil {
					t.Fatalf("round %d: after the access token was revoked: %v", round, err)
				}
				seen := proxy.take()
				if got := wheres(seen); got != wantSeen[c.id][round] {
					t.Fatalf("round %d: token endpoint saw %q, want %q", round, got, wantSeen[c.id][round])
				}
				if seen[0].refreshToken != rt {
					t.Fatalf("round %d: refreshed with a refresh token other than the stored one", round)
				}
				cur, err := p.CurrentAuth(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				if cur.RefreshToken == before.RefreshToken || cur.AccessToken == before.AccessToken {
					t.Fatalf("round %d: the provider did not rotate, or pigeon did not store the rotation", round)
				}
				rt = string(cur.RefreshToken)
			}
		})
	}

	// Presenting a rotated (consumed) refresh token is reuse: the provider
	// revokes the grant and answers invalid_grant; pigeon ends the session
	// with ErrSessionExpired. The grant is gone: the newest refresh token
	// no longer works either.
	t.Run("reuse detection ends the session", func(t *testing.T) {
		c := oidcClients[1]
		p, old := newPigeon(t, c, c.secret)
		staleAccess(t, p)
		if err := userinfo(t, p); err != nil {
			t.Fatal(err)
		}
		cur, err := p.CurrentAuth(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		newest := string(cur.RefreshToken)
		// the stored refresh token goes back to the consumed one
		if err := p.SaveNewAuth(ctxT(t), pigeon.SaveAuthParams{UID: "test-user", AccessToken: "not-a-token", RefreshToken: old}); err != nil {
			t.Fatal(err)
		}
		proxy.take()
		err = userinfo(t, p)
		var oe *pigeon.OAuth2Error
		if !errors.Is(err, pigeon.ErrSessionExpired) || !errors.As(err, &oe) || oe.Code != "invalid_grant" {
			t.Fatalf("reused refresh token: %v, want ErrSessionExpired with invalid_grant", err)
		}
		if got := wheres(proxy.take()); got != "header Bad Request invalid_grant" {
			t.Fatalf("token endpoint saw %q", got)
		}
		if _, err := p.CurrentAuth(ctxT(t)); !errors.Is(err, pigeon.ErrNoAuth) {
			t.Fatalf("account kept after reuse: %v", err)
		}
		st, code := oidcPost(t, hc, issuer+"/token", c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {newest}}, nil)
		if st != http.StatusBadRequest || code != "invalid_grant" {
			t.Fatalf("newest refresh token after reuse: %d %s, want the grant revoked", st, code)
		}
	})

	// A wrong client secret is a configuration error: invalid_client with
	// the provider's description, the session kept.
	t.Run("wrong secret is a configuration error", func(t *testing.T) {
		c := oidcClients[1]
		p, rt := newPigeon(t, c, "wrong-secret")
		staleAccess(t, p)
		err := userinfo(t, p)
		var oe *pigeon.OAuth2Error
		if !errors.As(err, &oe) || oe.Code != "invalid_client" || oe.StatusCode != http.StatusUnauthorized || oe.Description == "" {
			t.Fatalf("wrong secret: %v (%+v), want invalid_client with a description", err, oe)
		}
		if !errors.Is(err, pigeon.ErrRefreshMisconfigured) || errors.Is(err, pigeon.ErrSessionExpired) || !strings.Contains(err.Error(), "invalid_client: "+oe.Description) {
			t.Fatalf("wrong secret: %v, want a configuration error that says code and description", err)
		}
		// auto-detect tried both places; neither was accepted
		if got := wheres(proxy.take()); got != "header Unauthorized invalid_client; body Unauthorized invalid_client" {
			t.Fatalf("token endpoint saw %q", got)
		}
		cur, err := p.CurrentAuth(ctxT(t))
		if err != nil || string(cur.RefreshToken) != rt {
			t.Fatalf("session after a configuration error: %v", err)
		}
	})
}
