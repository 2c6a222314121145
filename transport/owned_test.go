package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apppigeon/pigeon/messages"
)

// authSeen is a server that records the Authorization headers it got
// (and whether the header was there at all) and answers with answer.
type authSeen struct {
	*httptest.Server
	mu  sync.Mutex
	got []string
}

func newAuthSeen(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *authSeen {
	s := &authSeen{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := r.Header["Authorization"]
		s.mu.Lock()
		if ok {
			s.got = append(s.got, strings.Join(v, ";"))
		} else {
			s.got = append(s.got, "<none>")
		}
		s.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authSeen) seen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.got, ",")
}

func ownedGet(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	Owned(req)
	return req
}

func do(t *testing.T, c *http.Client, req *http.Request) string {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// An Owned request gets the bearer in its own header map (nothing copied),
// the placeholder never reaches the server, and a 401 replays with the
// new token.
func TestOwned_BearerSetInPlaceAndReplayed(t *testing.T) {
	srv, _ := newServer(t) // 401 unless T2
	tok := newTokens()
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	seen := &authSeen{}
	var sent []*http.Request
	tr.Base = RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		seen.mu.Lock()
		seen.got = append(seen.got, r.Header.Get("Authorization"))
		sent = append(sent, r)
		seen.mu.Unlock()
		return base.RoundTrip(r)
	})
	req := ownedGet(t, context.Background(), srv.URL)
	if got := do(t, &http.Client{Transport: tr}, req); got != "ok" {
		t.Fatalf("body %q", got)
	}
	if s := seen.seen(); s != "Bearer T1,Bearer T2" {
		t.Fatalf("below the Transport: %s", s)
	}
	// In place: the caller's own map holds the bearer it was last sent
	// with, and the bodiless replay is the request itself, sent again
	// once the refusal's body was closed, not a copy.
	if got := req.Header.Get("Authorization"); got != "Bearer T2" {
		t.Fatalf("owned request's header after the call: %q", got)
	}
	if len(sent) != 2 || sent[0] != sent[1] {
		t.Fatal("the owned bodiless replay was a copy of the request")
	}
}

// A caller who sets Authorization after Owned sends its own header: the
// Transport neither replaces it nor refreshes on its 401.
func TestOwned_CallerAuthorizationAfterOwnedWins(t *testing.T) {
	srv := newAuthSeen(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	tok := newTokens()
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	req := ownedGet(t, context.Background(), srv.URL)
	req.Header.Set("Authorization", "Basic abc")
	do(t, &http.Client{Transport: tr}, req)
	if s := srv.seen(); s != "Basic abc" || tok.reports.Load() != 0 {
		t.Fatalf("server saw %s, reports %d", s, tok.reports.Load())
	}
}

// With no token (signed out) or a host that is not trusted, the
// placeholder is removed: the request goes out with no Authorization.
func TestOwned_PlaceholderRemovedWithoutBearer(t *testing.T) {
	srv := newAuthSeen(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, tc := range []struct {
		name string
		tr   func(base http.RoundTripper) *Transport
	}{
		{"no account", func(base http.RoundTripper) *Transport { return &Transport{Base: base, Tokens: noAccount{}} }},
		{"untrusted host", func(base http.RoundTripper) *Transport {
			return &Transport{Base: base, Tokens: newTokens(), Hosts: []string{"api.example.com"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := http.DefaultTransport.(*http.Transport).Clone()
			defer base.CloseIdleConnections()
			before := srv.seen()
			do(t, &http.Client{Transport: tc.tr(base)}, ownedGet(t, context.Background(), srv.URL))
			if s := strings.TrimPrefix(strings.TrimPrefix(srv.seen(), before), ","); s != "<none>" {
				t.Fatalf("server saw %s", s)
			}
		})
	}
}

type noAccount struct{}

func (noAccount) Token(context.Context) (*messages.TokenSnapshot, error) { return nil, nil }
func (noAccount) Unauthorized(context.Context, *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	return nil, messages.ErrNoAuth
}

// A same-host redirect of an Owned request carries a copy of the
// placeholder (http.Client copies the first request's header): it gets
// the bearer too, not the placeholder.
func TestOwned_SameHostRedirectGetsTheBearer(t *testing.T) {
	var srv *authSeen
	srv = newAuthSeen(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/from" {
			http.Redirect(w, r, srv.URL+"/to", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tok := newTokens()
	tok.cur.AccessToken = "T2"
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	if got := do(t, &http.Client{Transport: tr}, ownedGet(t, context.Background(), srv.URL+"/from")); got != "ok" {
		t.Fatalf("body %q", got)
	}
	if s := srv.seen(); s != "Bearer T2,Bearer T2" {
		t.Fatalf("server saw %s", s)
	}
}

// The placeholder is not a header value: an Owned request sent through a
// client without a Transport fails instead of sending it.
func TestOwned_PlaceholderNeverSentByOtherClients(t *testing.T) {
	srv := newAuthSeen(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	_, err := (&http.Client{Transport: base}).Do(ownedGet(t, context.Background(), srv.URL))
	if err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Fatalf("err %v, want an invalid header value", err)
	}
	if s := srv.seen(); s != "" {
		t.Fatalf("server saw %s", s)
	}
}

// Retry's later attempts of an Owned request get the token current at
// their time, not the bearer the first attempt was sent with.
func TestOwned_RetryAttemptGetsTheCurrentToken(t *testing.T) {
	n := 0
	var mu sync.Mutex
	srv := newAuthSeen(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tok := newTokens()
	auth := &Transport{Tokens: tok}
	r, _ := newRetry(t, auth, RetryPolicy{MaxAttempts: 2})
	// The token changes between the attempts (a refresh elsewhere).
	r.Base = RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := auth.RoundTrip(req)
		tok.mu.Lock()
		tok.cur = messages.TokenSnapshot{UID: "u", AccessToken: "T9", Version: 9}
		tok.mu.Unlock()
		return resp, err
	})
	if got := do(t, &http.Client{Transport: r}, ownedGet(t, context.Background(), srv.URL)); got != "ok" {
		t.Fatalf("body %q", got)
	}
	if s := srv.seen(); s != "Bearer T1,Bearer T9" {
		t.Fatalf("server saw %s", s)
	}
}

// Bind: a context that never ends becomes one that ends with the
// Transport's lifetime (with the caller's values), RoundTrip treats it as
// bound, and ending the lifetime fails the request with the Transport's
// error; a context that can end is returned as it is.
func TestBind_EndsWithLifeKeepsValues(t *testing.T) {
	life, end := context.WithCancel(context.Background())
	defer end()
	tr := &Transport{Tokens: newTokens(), Life: life}
	if got := tr.Bind(context.Background()); got.Done() == nil || !boundTo(got, life) {
		t.Fatal("Background not bound to the lifetime")
	}
	type key struct{}
	vctx := context.WithValue(context.Background(), key{}, "v")
	b := tr.Bind(vctx)
	if b.Value(key{}) != "v" || !boundTo(b, life) {
		t.Fatal("values lost or not bound")
	}
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if tr.Bind(cctx) != cctx {
		t.Fatal("a context that can end was replaced")
	}
	if (&Transport{}).Bind(vctx) != vctx {
		t.Fatal("a Transport without a lifetime changed the context")
	}

	started := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	tr.Base = base
	errc := make(chan error, 1)
	go func() {
		_, err := (&http.Client{Transport: tr}).Do(ownedGet(t, tr.Bind(context.Background()), srv.URL))
		errc <- err
	}()
	<-started
	end()
	if err := <-errc; !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}

// RoundTripperFunc adapts a function to http.RoundTripper (tests only).
type RoundTripperFunc func(*http.Request) (*http.Response, error)

func (f RoundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BindOnce: the lifetime itself (or the caller's values over it), no
// shards made; RoundTrip treats it as bound.
func TestBindOnce_TheLifetimeItselfNoShards(t *testing.T) {
	life, end := context.WithCancel(context.Background())
	defer end()
	tr := &Transport{Tokens: newTokens(), Life: life}
	if got := tr.BindOnce(context.Background()); got != life {
		t.Fatal("BindOnce(Background) is not the lifetime")
	}
	type key struct{}
	b := tr.BindOnce(context.WithValue(context.Background(), key{}, "v"))
	if b.Value(key{}) != "v" || !boundTo(b, life) {
		t.Fatal("values lost or not bound")
	}
	if _, ok := shardsByLife.Load(life); ok {
		t.Fatal("BindOnce made shards")
	}
	other, stop := context.WithCancel(context.Background())
	defer stop()
	if boundTo(other, life) {
		t.Fatal("an unrelated context counts as bound")
	}
}
