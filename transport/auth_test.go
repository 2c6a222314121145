package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apppigeon/pigeon/messages"
)

// staticTokens hands out T1, and T2 after one Unauthorized report.
type staticTokens struct {
	mu       sync.Mutex
	cur      messages.TokenSnapshot
	reports  atomic.Int32
	failWith error
}

func (s *staticTokens) Token(context.Context) (*messages.TokenSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	return &c, nil
}

func (s *staticTokens) Unauthorized(_ context.Context, _ *messages.TokenSnapshot) (*messages.TokenSnapshot, error) {
	s.reports.Add(1)
	if s.failWith != nil {
		return nil, s.failWith
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = messages.TokenSnapshot{UID: "u", AccessToken: "T2", Version: s.cur.Version + 1}
	c := s.cur
	return &c, nil
}

func newTokens() *staticTokens {
	return &staticTokens{cur: messages.TokenSnapshot{UID: "u", AccessToken: "T1", Version: 1}}
}

// server answers 401 unless the bearer is T2 and records the bodies.
func newServer(t *testing.T) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Header.Get("Authorization")+"|"+string(b))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer T2" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "expired")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &bodies
}

func newTestTransport(tok TokenSource) (*Transport, *http.Transport) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	return &Transport{Base: base, Tokens: tok}, base
}

func TestTransport_ReplaysOnceWithNewToken(t *testing.T) {
	srv, bodies := newServer(t)
	tok := newTokens()
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || tok.reports.Load() != 1 {
		t.Fatalf("body %q, reports %d", b, tok.reports.Load())
	}
	want := []string{"Bearer T1|hello", "Bearer T2|hello"}
	if strings.Join(*bodies, ",") != strings.Join(want, ",") {
		t.Fatalf("server saw %v, want %v", *bodies, want)
	}
}

func TestTransport_BodyNotReplayable(t *testing.T) {
	srv, bodies := newServer(t)
	tok := newTokens()
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.NopCloser(strings.NewReader("once")))
	_, err := (&http.Client{Transport: tr}).Do(req)
	var re *ReplayError
	if !errors.Is(err, messages.ErrBodyNotReplayable) || !errors.As(err, &re) || re.Response.StatusCode != 401 {
		t.Fatalf("err = %v", err)
	}
	if b, _ := io.ReadAll(re.Response.Body); string(b) != "expired" {
		t.Fatalf("refusal body %q", b)
	}
	if len(*bodies) != 1 || tok.reports.Load() != 1 {
		t.Fatalf("server saw %v (a replay with an empty body is forbidden); reports %d", *bodies, tok.reports.Load())
	}
}

func TestTransport_RefreshFailureIsTheError(t *testing.T) {
	srv, _ := newServer(t)
	tok := newTokens()
	tok.failWith = messages.ErrSessionExpired
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if !errors.Is(err, messages.ErrSessionExpired) {
		t.Fatalf("err = %v", err)
	}
}

func TestTransport_CallerAuthorizationPassesThrough(t *testing.T) {
	srv, bodies := newServer(t)
	tok := newTokens()
	tr, base := newTestTransport(tok)
	defer base.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer mine")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || tok.reports.Load() != 0 || (*bodies)[0] != "Bearer mine|" {
		t.Fatalf("status %d, reports %d, saw %v", resp.StatusCode, tok.reports.Load(), *bodies)
	}
}

// Row 20: no bearer across a redirect to another host; none over plain
// http to a non-loopback host unless allowed.
func TestTransport_RedirectAndPlainHTTPRules(t *testing.T) {
	var other atomic.Value
	other.Store("")
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other.Store("seen:" + r.Header.Get("Authorization"))
	}))
	defer b.Close()
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.URL+"/landing", http.StatusFound)
	}))
	defer a.Close()
	tr, base := newTestTransport(newTokens())
	defer base.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := other.Load().(string); got != "seen:" {
		t.Fatalf("other host got %q", got)
	}

	// api.example.test resolves, through the dialer, to the loopback server.
	addr := strings.TrimPrefix(b.URL, "http://")
	base2 := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer base2.CloseIdleConnections()
	tr2 := &Transport{Base: base2, Tokens: newTokens()}
	_, err = (&http.Client{Transport: tr2}).Get("http://api.example.test/x")
	if !errors.Is(err, ErrInsecureBearer) {
		t.Fatalf("plain http to a remote host: %v", err)
	}
	tr2.AllowInsecure = true
	other.Store("")
	resp, err = (&http.Client{Transport: tr2}).Get("http://api.example.test/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := other.Load().(string); got != "seen:Bearer T1" {
		t.Fatalf("allowed insecure: server saw %q", got)
	}
	// Hosts restricts the bearer to trusted hosts.
	tr3 := &Transport{Base: base, Tokens: newTokens(), Hosts: []string{"api.example.test"}}
	other.Store("")
	resp, err = (&http.Client{Transport: tr3}).Get(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := other.Load().(string); got != "seen:" {
		t.Fatalf("untrusted host got %q", got)
	}
}

func TestTransport_LifeEndsRequests(t *testing.T) {
	srv, _ := newServer(t)
	life, end := context.WithCancel(context.Background())
	tr, base := newTestTransport(newTokens())
	defer base.CloseIdleConnections()
	tr.Life = life
	end()
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("after Life ended: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "127.8.9.10": true, "example.com": false, "10.0.0.1": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}

// BearerPolicy is the one rule for HTTP requests and sockets.
func TestBearerPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy  BearerPolicy
		url     string
		trusted bool
		secure  bool
	}{
		{BearerPolicy{}, "ws://192.0.2.2/ws", true, false},
		{BearerPolicy{}, "http://192.0.2.2/", true, false},
		{BearerPolicy{}, "ws://127.0.0.1:8080/ws", true, true},
		{BearerPolicy{}, "ws://localhost/ws", true, true},
		{BearerPolicy{}, "wss://192.0.2.2/ws", true, true},
		{BearerPolicy{AllowInsecure: true}, "ws://192.0.2.2/ws", true, true},
		{BearerPolicy{Hosts: []string{"api.example.com"}}, "wss://API.example.com:443/ws", true, true},
		{BearerPolicy{Hosts: []string{"api.example.com"}}, "wss://evil.example.net/ws", false, true},
		{BearerPolicy{Hosts: []string{"127.0.0.1:1"}}, "ws://127.0.0.1:2/ws", false, true},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.policy.Trusts(u); got != tc.trusted {
			t.Errorf("%+v Trusts(%s) = %v", tc.policy, tc.url, got)
		}
		if err := tc.policy.Secure(u); (err == nil) != tc.secure || err != nil && !errors.Is(err, ErrInsecureBearer) {
			t.Errorf("%+v Secure(%s) = %v", tc.policy, tc.url, err)
		}
	}
}

// TestLifeShard_EndsWithLifeAndIsForgotten: requests are spread over
// distinct shards of the lifetime, every shard ends with the lifetime and
// its cause, and the lifetime's entry is then removed.
func TestLifeShard_EndsWithLifeAndIsForgotten(t *testing.T) {
	life, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("client closed")
	seen := map[context.Context]bool{}
	for range 2 * lifeShardCount {
		seen[lifeShard(life)] = true
	}
	if len(seen) != lifeShardCount {
		t.Fatalf("%d distinct shards, want %d", len(seen), lifeShardCount)
	}
	for s := range seen {
		if s.Err() != nil {
			t.Fatal("a shard ended before its lifetime")
		}
	}
	cancel(cause)
	for s := range seen {
		<-s.Done()
		if !errors.Is(context.Cause(s), cause) {
			t.Fatalf("shard cause %v, want %v", context.Cause(s), cause)
		}
	}
	// The entry goes in the AfterFunc that runs once life has ended; a
	// new lookup after that must not hand out ended shards forever.
	deadline := make(chan struct{})
	go func() {
		defer close(deadline)
		for {
			if _, ok := shardsByLife.Load(life); !ok {
				return
			}
			runtime.Gosched()
		}
	}()
	<-deadline
}
