package pigeon_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/transport/wire"
)

// wsRecorder is a minimal pigeon.v1 server on loopback that records every
// handshake's Authorization header and every client frame. By default it
// acks everything (init with init_ack, then a "welcome" event when
// welcome is set); silent answers nothing; status, when set, refuses the
// upgrade with that HTTP status.
type wsRecorder struct {
	srv     *httptest.Server
	welcome bool
	silent  bool
	status  int
	onInit  func() // called when an init frame arrives (before answering)

	upgrades atomic.Int64
	mu       sync.Mutex
	auth     []string // handshake Authorization headers, in order
	frames   []string // raw client frames
}

func newWSRecorder(t *testing.T, setup func(*wsRecorder)) *wsRecorder {
	t.Helper()
	r := &wsRecorder{}
	if setup != nil {
		setup(r)
	}
	up := websocket.Upgrader{Subprotocols: []string{"pigeon.v1"}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.upgrades.Add(1)
		r.mu.Lock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		if r.status != 0 {
			http.Error(w, "refused by test", r.status)
			return
		}
		c, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.frames = append(r.frames, string(data))
			r.mu.Unlock()
			var f struct{ Type, ID string }
			_ = json.Unmarshal(data, &f)
			if f.Type == "init" && r.onInit != nil {
				r.onInit()
			}
			if r.silent || f.Type == "ping" {
				continue
			}
			switch f.Type {
			case "init":
				_ = c.WriteJSON(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s"}})
				if r.welcome {
					_ = c.WriteJSON(map[string]any{"type": "event", "payload": map[string]any{"event": "welcome", "data": map[string]any{"hello": true}}})
				}
			default:
				_ = c.WriteJSON(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{}})
			}
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *wsRecorder) url() string { return "ws" + strings.TrimPrefix(r.srv.URL, "http") + "/ws" }
func (r *wsRecorder) host() string {
	return strings.TrimPrefix(r.srv.URL, "http://")
}

func (r *wsRecorder) seen() (auth, frames []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auth...), append([]string(nil), r.frames...)
}

// offlineClient is an authorized client with a stored token whose base URL
// is never dialed (the tests below fail before any dial, or are lazy).
func offlineClient(t *testing.T, opts ...pigeon.Option) *pigeon.AuthorizedPigeon {
	t.Helper()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"}, append([]pigeon.Option{
		pigeon.WithBaseURL("https://api.example.com"), pigeon.WithInMemoryStore(), pigeon.WithLogger(zaptest.NewLogger(t)),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := p.SaveNewAuth(ctxT(t), pigeon.SaveAuthParams{UID: "u1", AccessToken: "secret-token", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	return p
}

// Item 2: the socket's bearer follows the HTTP rule. A host that is not
// trusted, or plain ws:// to a non-loopback host, makes SocketInit fail
// before anything is dialed.
func TestSocketBearer_FollowsTheHTTPRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []pigeon.Option
		url  string
		want error
	}{
		{"untrusted host", nil, "ws://192.0.2.2/ws", pigeon.ErrUntrustedHost},
		{"untrusted host over wss", nil, "wss://evil.example.net/ws", pigeon.ErrUntrustedHost},
		{"trusted host over plain ws", []pigeon.Option{pigeon.WithAuthHosts("192.0.2.2")}, "ws://192.0.2.2/ws", pigeon.ErrInsecureBearer},
		{"trusted host over plain http (socket.io)", []pigeon.Option{pigeon.WithAuthHosts("192.0.2.2")}, "http://192.0.2.2/socket.io/", pigeon.ErrInsecureBearer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := offlineClient(t, tc.opts...)
			err := p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: tc.url})
			if !errors.Is(err, tc.want) {
				t.Fatalf("SocketInit = %v, want %v", err, tc.want)
			}
			if errors.Is(err, pigeon.ErrUntrustedHost) && !strings.Contains(err.Error(), "192.0.2.2") && !strings.Contains(err.Error(), "evil.example.net") {
				t.Fatalf("error %q does not name the host", err)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Fatalf("error %q leaks the token", err)
			}
		})
	}
	t.Run("WithInsecureHTTP allows plain ws to a trusted host", func(t *testing.T) {
		p := offlineClient(t, pigeon.WithAuthHosts("192.0.2.2"), pigeon.WithInsecureHTTP(), pigeon.WithLazySocket(0))
		if err := p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: "ws://192.0.2.2/ws"}); err != nil {
			t.Fatalf("SocketInit (lazy, nothing dialed) = %v", err)
		}
	})
	t.Run("a fixed Token follows the rule too", func(t *testing.T) {
		p := offlineClient(t)
		err := p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: "wss://evil.example.net/ws", Token: "other"})
		if !errors.Is(err, pigeon.ErrUntrustedHost) {
			t.Fatalf("SocketInit = %v", err)
		}
	})
}

// Item 2: a loopback socket server on another port is a different host:
// refused until WithAuthHosts names it; then handshake and init carry the
// bearer.
func TestSocketBearer_AuthHostsTrustTheSocketHost(t *testing.T) {
	rec := newWSRecorder(t, nil)
	p := offlineClient(t)
	if err := p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: rec.url()}); !errors.Is(err, pigeon.ErrUntrustedHost) {
		t.Fatalf("SocketInit to an untrusted loopback port = %v", err)
	}
	if n := rec.upgrades.Load(); n != 0 {
		t.Fatalf("%d dials to the untrusted host", n)
	}
	p2 := offlineClient(t, pigeon.WithAuthHosts(rec.host()))
	if err := p2.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: rec.url()}); err != nil {
		t.Fatal(err)
	}
	auth, frames := rec.seen()
	if len(auth) != 1 || auth[0] != "Bearer secret-token" || !strings.Contains(frames[0], "Bearer secret-token") {
		t.Fatalf("handshake auth %q, frames %q", auth, frames)
	}
}

// Item 2: a ghost without a token may open a socket anywhere, but a token
// set later never reaches an untrusted host (nor its live socket).
func TestSocketBearer_GhostTokenNeverReachesUntrustedHost(t *testing.T) {
	rec := newWSRecorder(t, nil)
	g, err := pigeon.NewGhost(pigeon.WithBaseURL("https://api.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	ctx := ctxT(t)
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: rec.url()}); err != nil {
		t.Fatal(err)
	}
	g.SetAuthToken("ghost-token")
	g.UpdateHeaders(map[string]string{"X-Client": "t"})
	if _, err := g.EmitWithAck(ctx, "e", 1); err != nil { // after the updates on the same connection
		t.Fatal(err)
	}
	auth, frames := rec.seen()
	for _, s := range append(auth, frames...) {
		if strings.Contains(s, "ghost-token") {
			t.Fatalf("the token reached the untrusted host: %q", s)
		}
	}
	if !strings.Contains(strings.Join(frames, "\n"), `"X-Client":"t"`) {
		t.Fatalf("the header update did not arrive: %q", frames)
	}
	// With a token already set, SocketInit to that host is refused.
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: rec.url()}); !errors.Is(err, pigeon.ErrUntrustedHost) {
		t.Fatalf("SocketInit with a token = %v", err)
	}
}

// Item 2: socket.io's auth payload carries the token and nothing else.
func TestSocketBearer_SocketIOAuthPayloadIsTheToken(t *testing.T) {
	p, err := wire.DefaultAuthPayload(http.Header{"Authorization": {"Bearer tok"}, "X-Api-Key": {"k"}, "Cookie": {"c"}})
	if err != nil || string(p) != `{"token":"tok"}` {
		t.Fatalf("auth payload %s, %v", p, err)
	}
}

// Item 3: a failed SocketInit says why (handshake status, dial error, join
// rejection with code and message) and leaves nothing running: no actor
// (Emit: ErrSocketNotInitialized), no goroutine, no further dial.
func TestSocketInit_FailsWithTheCauseAndLeavesNothingRunning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rec   func(*wsRecorder)
		join  string
		want  []string
		dials int64
	}{
		{"handshake 403", func(r *wsRecorder) { r.status = http.StatusForbidden }, "", []string{"403", "refresh"}, 1},
		{"handshake 500", func(r *wsRecorder) { r.status = http.StatusInternalServerError }, "", []string{"500"}, 1},
		{"dial refused", func(r *wsRecorder) {}, "", []string{"dial"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newWSRecorder(t, tc.rec)
			p := offlineClient(t, pigeon.WithAuthHosts(rec.host()))
			url := rec.url()
			if tc.name == "dial refused" {
				rec.srv.Close()
			}
			before := goleak.IgnoreCurrent()
			err := p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: url})
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("SocketInit = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("SocketInit = %q, want it to contain %q", err, w)
				}
			}
			goleak.VerifyNone(t, before) // the actor, its dials and timers are gone
			if n := rec.upgrades.Load(); n != tc.dials {
				t.Fatalf("%d upgrade requests, want %d", n, tc.dials)
			}
			if err := p.Emit(ctxT(t), "e", 1); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
				t.Fatalf("Emit after a failed SocketInit = %v", err)
			}
		})
	}
	t.Run("join rejected", func(t *testing.T) {
		e := newEnv(t, envConfig{noClock: true})
		e.login("joiner@example.com")
		err := e.p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "user:somebody-else"})
		if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "not allowed in user:somebody-else") {
			t.Fatalf("SocketInit = %v, want the rejection's code and message", err)
		}
		if err := e.p.Emit(ctxT(t), "e", 1); !errors.Is(err, pigeon.ErrSocketNotInitialized) {
			t.Fatalf("Emit after a failed SocketInit = %v", err)
		}
	})
}

// Item 3: when the caller's context ends first, the error says what the
// connection was still waiting for, not just "context canceled".
func TestSocketInit_ContextEndNamesWhatWasPending(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxT(t))
	rec := newWSRecorder(t, func(r *wsRecorder) { r.silent, r.onInit = true, cancel })
	p := offlineClient(t, pigeon.WithAuthHosts(rec.host()))
	err := p.SocketInit(ctx, pigeon.SocketConnectParams{URL: rec.url()})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("SocketInit = %v, want context.Canceled naming the handshake", err)
	}
}

// Item 3: Listen before SocketInit is allowed and sees what the server
// sends on connect, on every connection.
func TestSocket_ListenBeforeInitSeesTheWelcome(t *testing.T) {
	rec := newWSRecorder(t, func(r *wsRecorder) { r.welcome = true })
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		g, err := pigeon.NewGhost(pigeon.WithBaseURL(rec.srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := g.Listen(ctx, "welcome")
		if err != nil {
			t.Fatal(err)
		}
		if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: rec.url(), JoinID: "room"}); err != nil {
			t.Fatal(err)
		}
		select {
		case ev, ok := <-sub.C:
			if !ok || ev.Name != "welcome" {
				t.Fatalf("connection %d: %+v %v (err %v)", i, ev, ok, sub.Err())
			}
		case <-ctx.Done():
			t.Fatalf("connection %d lost the welcome event", i)
		}
		_ = g.Close()
		if _, ok := <-sub.C; ok || !errors.Is(sub.Err(), pigeon.ErrClosed) {
			t.Fatalf("subscription after Close: err %v", sub.Err())
		}
	}
}

// Item 3: a subscription made before a SocketInit that fails ends with
// that failure; one closed before SocketInit ends at once.
func TestSocket_EarlySubscriptionEndsWithTheInitError(t *testing.T) {
	rec := newWSRecorder(t, func(r *wsRecorder) { r.status = http.StatusInternalServerError })
	p := offlineClient(t, pigeon.WithAuthHosts(rec.host()))
	ctx := ctxT(t)
	closed, err := p.Listen(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	_ = closed.Close()
	if _, ok := <-closed.C; ok || !errors.Is(closed.Err(), pigeon.ErrClosed) {
		t.Fatalf("closed early subscription: %v", closed.Err())
	}
	sub, err := p.Listen(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	initErr := p.SocketInit(ctx, pigeon.SocketConnectParams{URL: rec.url()})
	if initErr == nil {
		t.Fatal("SocketInit succeeded")
	}
	if _, ok := <-sub.C; ok || sub.Err() == nil || !strings.Contains(sub.Err().Error(), "500") {
		t.Fatalf("early subscription ended with %v, want the SocketInit error", sub.Err())
	}
}

// Item 4: a panicking SocketInterceptor becomes an error of SocketInit or
// Emit (and of the subscriptions); the process keeps running.
func TestSocketInterceptor_PanicIsAnError(t *testing.T) {
	t.Run("during SocketInit", func(t *testing.T) {
		e := newEnv(t, envConfig{noClock: true, pigeon: []pigeon.Option{pigeon.WithSocketInterceptor(
			func(actors.SocketDirection, wire.Frame) (wire.Frame, bool) { panic("interceptor boom") })}})
		e.login("panic@example.com")
		err := e.p.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "chat:universal"})
		var pe *pigeon.PanicError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "interceptor boom") {
			t.Fatalf("SocketInit = %v, want the panic as an error", err)
		}
	})
	t.Run("during Emit", func(t *testing.T) {
		e := newEnv(t, envConfig{noClock: true, pigeon: []pigeon.Option{pigeon.WithSocketInterceptor(
			func(dir actors.SocketDirection, f wire.Frame) (wire.Frame, bool) {
				if dir == actors.SocketOutbound && strings.Contains(string(f.Data), `"emit"`) {
					panic("emit boom")
				}
				return f, true
			})}})
		e.login("panic2@example.com")
		ctx := ctxT(t)
		sub := joinChat(t, ctx, e, e.p)
		err := e.p.Emit(ctx, "message", map[string]string{"text": "x"})
		var pe *pigeon.PanicError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "emit boom") {
			t.Fatalf("Emit = %v, want the panic as an error", err)
		}
		for range sub.C {
		}
		if !errors.As(sub.Err(), &pe) {
			t.Fatalf("subscription ended with %v", sub.Err())
		}
		if _, err := e.p.Get(ctx, "/echo"); err != nil { // the client lives on
			t.Fatal(err)
		}
	})
}
