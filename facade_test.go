package pigeon_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/transport/wire"
)

type echoAnswer struct {
	Data struct {
		UID    string `json:"uid"`
		Method string `json:"method"`
		Body   string `json:"body"`
		Query  string `json:"query"`
	} `json:"data"`
}

// Verbs, body encodings, typed helpers and status errors through the real
// backend.
func TestFacade_VerbsBodiesAndStatusErrors(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	tok := e.login("verbs@example.com")
	ctx := ctxT(t)
	cases := []struct {
		name string
		body any
		want string
	}{
		{"json", map[string]int{"n": 1}, `{"n":1}`},
		{"bytes", []byte("raw"), "raw"},
		{"string", "text", "text"},
		{"form", url.Values{"a": {"1"}}, "a=1"},
		{"reader", io.MultiReader(strings.NewReader("a"), strings.NewReader("b")), "ab"},
		{"raw json", json.RawMessage(`[1]`), "[1]"},
	}
	for _, c := range cases {
		ans, err := pigeon.PostJSON[echoAnswer](ctx, e.p, "/echo", c.body)
		if err != nil || ans.Data.Body != c.want || ans.Data.UID != tok.UID {
			t.Errorf("%s: body %q uid %q err %v", c.name, ans.Data.Body, ans.Data.UID, err)
		}
	}
	ans, err := pigeon.GetJSON[echoAnswer](ctx, e.p, "/echo", pigeon.WithQuery(url.Values{"q": {"x y"}}), pigeon.WithHeader("X-Test", "1"))
	if err != nil || ans.Data.Query != "q=x+y" {
		t.Fatalf("GET with query: %+v %v", ans, err)
	}
	r, err := e.p.Get(ctx, "/no/such/path")
	var se *pigeon.StatusError
	if !errors.As(err, &se) || se.Response != r || r.StatusCode != 404 || len(r.Body) == 0 {
		t.Fatalf("404: resp %+v err %v", r, err)
	}
	for _, f := range []func() (*pigeon.Response, error){
		func() (*pigeon.Response, error) { return e.p.Put(ctx, "/echo", nil) },
		func() (*pigeon.Response, error) { return e.p.Patch(ctx, "/echo", nil) },
		func() (*pigeon.Response, error) { return e.p.Delete(ctx, "/echo") },
	} {
		if r, err := f(); !errors.As(err, &se) || r.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("PUT/PATCH/DELETE on /echo: %v", err)
		}
	}
	if _, err := pigeon.NewAuthorized(nil); err == nil {
		t.Fatal("nil refresher accepted")
	}
	if _, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithBaseURL("not a url"), pigeon.WithInMemoryStore()); err == nil {
		t.Fatal("bad base URL accepted")
	}
}

// Default headers, UpdateHeaders and middleware: middleware runs inside the
// auth layer and sees the final request and the replay.
func TestFacade_HeadersAndMiddleware(t *testing.T) {
	var mu sync.Mutex
	var seen []string // "path bearer X-App"
	mw := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("X-App"))
			mu.Unlock()
			return next.RoundTrip(r)
		})
	}
	e := newEnv(t, envConfig{noClock: true, pigeon: []pigeon.Option{
		pigeon.WithHeaders(map[string]string{"X-App": "v1"}), pigeon.WithMiddleware(mw),
	}})
	tok := e.login("mw@example.com")
	ctx := ctxT(t)
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	e.p.UpdateHeaders(map[string]string{"X-App": "v2"})
	if _, err := e.p.Get(ctx, "/echo", pigeon.WithHeader("X-App", "mine")); err != nil {
		t.Fatal(err)
	}
	e.p.UpdateHeaders(map[string]string{"X-App": ""})
	if _, err := e.p.Get(ctx, "/echo"); err != nil {
		t.Fatal(err)
	}
	cur, _ := e.p.CurrentAuth(ctx)
	t2 := "Bearer " + string(cur.AccessToken)
	want := []string{
		"/echo Bearer " + tok.AccessToken + " v1", // refused
		"/auth/refresh  v1",                       // the refresh: no bearer, through middleware
		"/echo " + t2 + " v1",                     // the replay
		"/echo " + t2 + " mine",                   // a request's own header wins
		"/echo " + t2 + " ",                       // removed default
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("middleware saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// OAuth2Refresher against an RFC 6749 token endpoint: Basic client
// credentials, scope, expires_in, a missing refresh_token keeps the old one,
// invalid_grant ends the session.
func TestFacade_OAuth2Refresher(t *testing.T) {
	var grants atomic.Int32
	var refreshTokens []string
	var mu sync.Mutex
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		// RFC 6749 §2.3.1: client credentials are form-encoded before Basic auth
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		_ = r.ParseForm()
		mu.Lock()
		refreshTokens = append(refreshTokens, r.Form.Get("refresh_token"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !ok || id != "app id" || secret != "s3cret" || r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("scope") != "read write":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		case r.Form.Get("refresh_token") == "dead":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
		default:
			n := grants.Add(1)
			// no refresh_token in the answer: the old one is kept
			_, _ = io.WriteString(w, `{"access_token":"good-`+string(rune('0'+n))+`","token_type":"Bearer","expires_in":3600}`)
		}
	}))
	defer token.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer good-") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	defer api.Close()
	clock := newFakeClock()
	p, err := pigeon.NewAuthorized(pigeon.OAuth2Refresher{TokenURL: token.URL + "/token", ClientID: "app id", ClientSecret: "s3cret", Scopes: []string{"read", "write"}},
		pigeon.WithBaseURL(api.URL), pigeon.WithInMemoryStore(), pigeon.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u", AccessToken: "stale", RefreshToken: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, "/x"); err != nil {
		t.Fatal(err)
	}
	cur, err := p.CurrentAuth(ctx)
	if err != nil || cur.AccessToken != "good-1" || cur.RefreshToken != "r1" || !cur.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("after refresh: %+v (%v), expires %v", cur, err, cur.ExpiresAt)
	}
	// a rejected grant ends the session
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u", AccessToken: "stale", RefreshToken: "dead"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, "/x"); !errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("invalid_grant: %v", err)
	}
	if _, err := p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("session kept after invalid_grant: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(refreshTokens, ",") != "r1,dead" {
		t.Fatalf("token endpoint saw %v", refreshTokens)
	}
}

// Interceptors see every frame in and out and may drop one.
func TestFacade_SocketInterceptorAndLiveHeaders(t *testing.T) {
	var mu sync.Mutex
	var out []string
	icpt := func(dir actors.SocketDirection, f wire.Frame) (wire.Frame, bool) {
		var env struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		_ = json.Unmarshal(f.Data, &env)
		if dir == actors.SocketOutbound {
			mu.Lock()
			out = append(out, env.Type)
			mu.Unlock()
		}
		// drop inbound events whose text is "secret"
		keep := !(dir == actors.SocketInbound && strings.Contains(string(env.Payload), `"text":"secret"`))
		return f, keep
	}
	e := newEnv(t, envConfig{noClock: true, pigeon: []pigeon.Option{pigeon.WithSocketInterceptor(icpt)}})
	e.login("icpt@example.com")
	ctx := ctxT(t)
	sub := joinChat(t, ctx, e, e.p)
	before := e.be.Stats().UpdateAcks
	e.p.UpdateHeaders(map[string]string{"X-Client": "pigeon-test"})
	for _, text := range []string{"secret", "visible"} {
		if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": text}); err != nil {
			t.Fatal(err)
		}
	}
	ev := recv(t, ctx, sub.C)
	if !strings.Contains(string(ev.Data), "visible") {
		t.Fatalf("first delivered event %s: the interceptor should have dropped the secret one", ev.Data)
	}
	if n := e.be.Stats().UpdateAcks - before; n != 1 {
		t.Fatalf("UpdateHeaders reached the live socket %d times, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(out, ","); !strings.HasPrefix(got, "init,join,update,emit,emit") {
		t.Fatalf("outbound frames %s", got)
	}
}

// DisconnectSocket and Close, repeated and concurrent with socket calls,
// are idempotent and leave nothing running (goleak in TestMain).
func TestStress_DisconnectAndCloseWhileEmitting(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	e.login("stress@example.com")
	ctx := ctxT(t)
	sub := joinChat(t, ctx, e, e.p)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				// 160 emits race the 64-emit buffer, which holds unacked
				// emits too (docs/reliability.md R10): a full buffer is a
				// refusal the caller sees, never a silent loss.
				err := e.p.Emit(ctx, "message", map[string]string{"text": "x"})
				if err != nil && !errors.Is(err, pigeon.ErrSocketNotInitialized) && !errors.Is(err, pigeon.ErrClosed) && !errors.Is(err, pigeon.ErrBufferFull) {
					t.Errorf("Emit: %v", err)
					return
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = e.p.DisconnectSocket() }()
	}
	wg.Wait()
	for range sub.C {
	}
	if !errors.Is(sub.Err(), pigeon.ErrClosed) {
		t.Fatalf("subscription ended with %v", sub.Err())
	}
	// HTTP and the store keep working after DisconnectSocket.
	if _, err := e.p.CurrentAuth(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DisconnectSocket(); err != nil {
		t.Fatalf("second DisconnectSocket: %v", err)
	}
	if _, err := e.p.Listen(ctx, "message"); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
		t.Fatalf("Listen after disconnect: %v", err)
	}
	var closeErrs [3]error
	for i := range closeErrs {
		wg.Add(1)
		go func() { defer wg.Done(); closeErrs[i] = e.p.Close() }()
	}
	wg.Wait()
	nils := 0
	for _, err := range closeErrs {
		switch {
		case err == nil:
			nils++
		case !errors.Is(err, pigeon.ErrClosed):
			t.Fatalf("Close: %v", err)
		}
	}
	if nils != 1 {
		t.Fatalf("%d Close calls returned nil, want exactly the first", nils)
	}
	if err := e.p.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e)}); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SocketInit after Close: %v", err)
	}
}

// A mode change disconnects the inactive client's socket, unless
// WithKeepInactiveSocket.
func TestSwitch_InactiveSocketDisconnected(t *testing.T) {
	for _, keep := range []bool{false, true} {
		entered, release := make(chan struct{}), make(chan struct{})
		hold := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Hold") == "1" {
					close(entered)
					<-release
				}
				next.ServeHTTP(w, r)
			})
		}
		e := newEnv(t, envConfig{noClock: true, wrap: hold})
		e.login("mode@example.com")
		g := newGhost(t, e)
		var opts []pigeon.SwitchOption
		if keep {
			opts = append(opts, pigeon.WithKeepInactiveSocket())
		}
		s, err := pigeon.NewSwitch(e.p, g, opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t)
		sub := joinChat(t, ctx, e, s)
		inflight := make(chan error, 1)
		go func() { _, err := s.Get(ctx, "/echo", pigeon.WithHeader("X-Hold", "1")); inflight <- err }()
		<-entered // the request is at the server, sent by the authorized client
		if err := s.Use(ctx, pigeon.ModeGhost); err != nil {
			t.Fatal(err)
		}
		close(release)
		if err := <-inflight; err != nil {
			t.Fatalf("request in flight across the switch: %v", err)
		}
		if keep {
			if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "still on"}); err != nil {
				t.Fatalf("kept socket: %v", err)
			}
			if ev := recv(t, ctx, sub.C); !strings.Contains(string(ev.Data), "still on") {
				t.Fatalf("event %s", ev.Data)
			}
		} else {
			for range sub.C {
			}
			if !errors.Is(sub.Err(), pigeon.ErrClosed) {
				t.Fatalf("inactive subscription ended with %v", sub.Err())
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
