package pigeon_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// v1Server is a small pigeon.v1 server for the facade's socket options:
// it answers init and join, sends big bytes of event data after the join
// when big > 0, and refuses the websocket handshake with 503 while
// refusing is set. kick closes every live connection (the client sees
// 1006).
type v1Server struct {
	srv      *httptest.Server
	big      int
	refusing atomic.Bool
	pings    chan struct{} // one value per client ping (dropped when full)
	mu       sync.Mutex
	conns    []*websocket.Conn
}

func newV1Server(t *testing.T, tlsServer bool, big int) *v1Server {
	t.Helper()
	s := &v1Server{big: big, pings: make(chan struct{}, 8)}
	up := websocket.Upgrader{Subprotocols: []string{"pigeon.v1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.refusing.Load() {
			http.Error(w, "refusing", http.StatusServiceUnavailable)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		defer c.Close()
		for {
			var f struct {
				Type, ID string
				Payload  json.RawMessage
			}
			if err := c.ReadJSON(&f); err != nil {
				return
			}
			switch f.Type {
			case "init":
				_ = c.WriteJSON(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s"}})
			case "join":
				_ = c.WriteJSON(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{"channel": "room", "epoch": "e", "seq": 0, "recovered": true}})
				if s.big > 0 {
					data, _ := json.Marshal(strings.Repeat("x", s.big))
					_ = c.WriteJSON(map[string]any{"type": "event", "payload": map[string]any{"channel": "room", "event": "big", "epoch": "e", "seq": 1, "data": json.RawMessage(data)}})
				}
			case "ping":
				select {
				case s.pings <- struct{}{}:
				default:
				}
			default:
				_ = c.WriteJSON(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{}})
			}
		}
	})
	if tlsServer {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

func (s *v1Server) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

func (s *v1Server) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func newGhostFor(t *testing.T, s *v1Server, opts ...pigeon.Option) *pigeon.GhostPigeon {
	t.Helper()
	g, err := pigeon.NewGhost(append([]pigeon.Option{pigeon.WithBaseURL(s.srv.URL), pigeon.WithLogger(zaptest.NewLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// recvStatus returns the next status; a closed stream fails the test.
func recvStatus(t *testing.T, ctx context.Context, ch <-chan pigeon.SocketStatus) pigeon.SocketStatus {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatal("state stream closed")
		}
		return st
	case <-ctx.Done():
		t.Fatalf("waiting for a status: %v", ctx.Err())
	}
	return pigeon.SocketStatus{}
}

// statesUntil reads ch until a status in state until arrives and returns
// the states seen.
func statesUntil(t *testing.T, ctx context.Context, ch <-chan pigeon.SocketStatus, until pigeon.SocketState) ([]pigeon.SocketState, pigeon.SocketStatus) {
	t.Helper()
	var seen []pigeon.SocketState
	for {
		st := recvStatus(t, ctx, ch)
		seen = append(seen, st.State)
		if st.State == until {
			return seen, st
		}
	}
}

// The state stream of a client spans its sockets: idle before the first
// SocketInit, then every transition, SocketClosed with ErrClosed after
// DisconnectSocket, the next socket's states, and a closed channel after
// Close. The Switch gives the active client's stream.
func TestSubscribeSocketState_FollowsTheClientsSockets(t *testing.T) {
	s := newV1Server(t, false, 0)
	ctx := ctxT(t)
	g := newGhostFor(t, s)
	ch, err := g.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recvStatus(t, ctx, ch); st.State != pigeon.SocketIdle {
		t.Fatalf("first status %+v, want idle", st)
	}
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"}); err != nil {
		t.Fatal(err)
	}
	if seen, _ := statesUntil(t, ctx, ch, pigeon.SocketConnected); len(seen) != 2 || seen[0] != pigeon.SocketConnecting {
		t.Fatalf("states %v, want connecting, connected", seen)
	}
	if err := g.DisconnectSocket(); err != nil {
		t.Fatal(err)
	}
	if st := recvStatus(t, ctx, ch); st.State != pigeon.SocketClosed || !errors.Is(st.Err, pigeon.ErrClosed) {
		t.Fatalf("after DisconnectSocket %+v, want closed with ErrClosed", st)
	}
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"}); err != nil {
		t.Fatal(err)
	}
	statesUntil(t, ctx, ch, pigeon.SocketConnected)

	sw, err := pigeon.NewSwitch(offlineClient(t), g, pigeon.WithMode(pigeon.ModeGhost))
	if err != nil {
		t.Fatal(err)
	}
	swch, err := sw.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := recvStatus(t, ctx, swch); st.State != pigeon.SocketConnected {
		t.Fatalf("switch stream starts with %+v, want the ghost's connected", st)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan pigeon.SocketStatus{ch, swch} {
		if seen, _ := statesUntil(t, ctx, c, pigeon.SocketClosed); len(seen) != 1 {
			t.Fatalf("states before the end %v", seen)
		}
		if st, ok := <-c; ok {
			t.Fatalf("stream open after Close: %+v", st)
		}
	}
	if _, err := g.SubscribeSocketState(ctx); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("SubscribeSocketState after Close: %v", err)
	}
}

// WithReconnect caps the attempts: when the server stays away the stream
// ends in SocketClosed with ErrReconnectExhausted, and Emit and Listen
// return it.
func TestWithReconnect_ExhaustionEndsTheSocket(t *testing.T) {
	s := newV1Server(t, false, 0)
	ctx := ctxT(t)
	g := newGhostFor(t, s, pigeon.WithReconnect(pigeon.ReconnectPolicy{MaxAttempts: 2, MinDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
	ch, err := g.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"}); err != nil {
		t.Fatal(err)
	}
	statesUntil(t, ctx, ch, pigeon.SocketConnected)
	s.refusing.Store(true)
	s.kick()
	seen, last := statesUntil(t, ctx, ch, pigeon.SocketClosed)
	reconnecting := 0
	for _, st := range seen {
		if st == pigeon.SocketReconnecting {
			reconnecting++
		}
	}
	if reconnecting != 2 || !errors.Is(last.Err, pigeon.ErrReconnectExhausted) {
		t.Fatalf("states %v ending %+v; want 2 reconnect attempts, then closed with ErrReconnectExhausted", seen, last)
	}
	if err := g.Emit(ctx, "x", nil); !errors.Is(err, pigeon.ErrReconnectExhausted) {
		t.Fatalf("Emit after exhaustion: %v", err)
	}
	if _, err := g.Listen(ctx, "x"); !errors.Is(err, pigeon.ErrReconnectExhausted) {
		t.Fatalf("Listen after exhaustion: %v", err)
	}
}

// A server message above 1 MiB ends the socket with close 1009 unless
// WithSocketReadLimit allows it.
func TestWithSocketReadLimit_AllowsLargerMessages(t *testing.T) {
	s := newV1Server(t, false, 2<<20)
	for _, tc := range []struct {
		name string
		opts []pigeon.Option
		fits bool
	}{{"default 1 MiB", nil, false}, {"4 MiB", []pigeon.Option{pigeon.WithSocketReadLimit(4 << 20)}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			g := newGhostFor(t, s, tc.opts...)
			sub, err := g.Listen(ctx, "big")
			if err != nil {
				t.Fatal(err)
			}
			if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"}); err != nil {
				t.Fatal(err)
			}
			ev, ok := <-sub.C
			var ce *messages.SocketCloseError
			switch {
			case tc.fits && (!ok || len(ev.Data) != 2<<20+2):
				t.Fatalf("event %d bytes (open %v, err %v), want the 2 MiB string", len(ev.Data), ok, sub.Err())
			case !tc.fits && (ok || !errors.As(sub.Err(), &ce) || ce.Code != websocket.CloseMessageTooBig):
				t.Fatalf("subscription open %v, err %v; want it ended with close 1009", ok, sub.Err())
			}
		})
	}
}

// wss:// takes the TLS configuration of WithHTTPClient's transport (here
// the test server's CA), or WithSocketTLSConfig's; without either the
// certificate is not trusted.
func TestSocketTLS_FromTheHTTPClientOrTheOption(t *testing.T) {
	s := newV1Server(t, true, 0)
	trusting := s.srv.Client().Transport.(*http.Transport).TLSClientConfig
	for _, tc := range []struct {
		name string
		opts []pigeon.Option
		ok   bool
	}{
		{"no trust", nil, false},
		{"WithHTTPClient", []pigeon.Option{pigeon.WithHTTPClient(s.srv.Client())}, true},
		{"WithSocketTLSConfig", []pigeon.Option{pigeon.WithSocketTLSConfig(trusting)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			g := newGhostFor(t, s, tc.opts...)
			err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"})
			var ue *tls.CertificateVerificationError
			if tc.ok && err != nil || !tc.ok && !errors.As(err, &ue) {
				t.Fatalf("SocketInit = %v, want ok %v (or a certificate error)", err, tc.ok)
			}
		})
	}
}

// WithSocketHandshakeTimeout bounds a handshake the server never answers.
func TestWithSocketHandshakeTimeout_BoundsASilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() { // accept and stay silent until the listener closes
		defer wg.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	g, err := pigeon.NewGhost(pigeon.WithLogger(zaptest.NewLogger(t)), pigeon.WithSocketHandshakeTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	err = g.SocketInit(ctxT(t), pigeon.SocketConnectParams{URL: "ws://" + ln.Addr().String() + "/ws"})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("SocketInit = %v, want a handshake timeout", err)
	}
}

// WithSocketPing sets pigeon.v1's keep-alive: with a short interval the
// client pings a server that never pings itself (the default, 25s, would
// not within the test).
func TestWithSocketPing_SetsTheKeepAlive(t *testing.T) {
	s := newV1Server(t, false, 0)
	ctx := ctxT(t)
	g := newGhostFor(t, s, pigeon.WithSocketPing(20*time.Millisecond, time.Minute))
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: s.url(), JoinID: "room"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		recv(t, ctx, s.pings)
	}
}

// Bad socket options are errors that name the option.
func TestSocketOptions_BadValuesAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  pigeon.Option
	}{
		{"WithReconnect", pigeon.WithReconnect(pigeon.ReconnectPolicy{MaxAttempts: -1})},
		{"WithReconnect", pigeon.WithReconnect(pigeon.ReconnectPolicy{MinDelay: time.Second, MaxDelay: time.Millisecond})},
		{"WithSocketReadLimit", pigeon.WithSocketReadLimit(0)},
		{"WithSocketHandshakeTimeout", pigeon.WithSocketHandshakeTimeout(-time.Second)},
		{"WithSocketTLSConfig", pigeon.WithSocketTLSConfig(nil)},
		{"WithSocketPing", pigeon.WithSocketPing(0, time.Second)},
	} {
		if _, err := pigeon.NewGhost(tc.opt); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: error %v, want one naming the option", tc.name, err)
		}
	}
}

// A token change made straight at the AuthStore (through Actors()) reaches
// the live socket as one update: the socket follows the store itself.
func TestSocketTokens_ChangeThroughActorsReachesTheSocket(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	e.login("alice@example.com")
	bob, err := e.be.CreateUser("bob@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	joinChat(t, ctx, e, e.p)
	before := e.be.Stats()
	sys, store, _ := e.p.Actors()
	rec := messages.AuthRecord{UID: "bob", AccessToken: messages.Secret(bob.AccessToken), RefreshToken: messages.Secret(bob.RefreshToken)}
	if _, err := actors.Ask(ctx, sys, store, &messages.SaveAuth{Record: rec, MakeCurrent: true}); err != nil {
		t.Fatal(err)
	}
	// An acked emit after the save: the update, sent first on the same
	// connection, was answered before it.
	if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "as bob"}); err != nil {
		t.Fatal(err)
	}
	after := e.be.Stats()
	if after.UpdateAcks != before.UpdateAcks+1 || after.WSTotal != before.WSTotal {
		t.Fatalf("update acks +%d, connections +%d; want +1, +0", after.UpdateAcks-before.UpdateAcks, after.WSTotal-before.WSTotal)
	}
}
