package actors

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/ws"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

const (
	tAckTimeout   = 30 * time.Minute
	tPingInterval = time.Hour
	tPingGrace    = 2 * time.Hour
)

// sockEnv is one SocketConn under test with its fake server and clock.
type sockEnv struct {
	t     *testing.T
	sys   *actor.ActorSystem
	pid   *actor.PID
	srv   *fakeServer
	clock *wstest.Clock
	cfg   *SocketConfig // as given to the actor
}

// newSockEnv starts a fake server and a SocketConn configured by cfg after
// test defaults (fake clock, seeded jitter, long ack/ping timeouts so that
// reconnect delays are the only short timers).
func newSockEnv(t *testing.T, mut func(*SocketConfig)) *sockEnv {
	t.Helper()
	return newSockEnvWith(t, nil, mut)
}

// newSockEnvWith is newSockEnv with setup run on the fake server before
// the actor is spawned (an eager actor dials at once: hooks installed
// later could miss its first frames).
func newSockEnvWith(t *testing.T, setup func(*fakeServer), mut func(*SocketConfig)) *sockEnv {
	t.Helper()
	return newSockEnvIn(t, setup, func(_ *actor.ActorSystem, c *SocketConfig) {
		if mut != nil {
			mut(c)
		}
	})
}

// newSockEnvIn is newSockEnvWith whose mut also gets the actor system (to
// spawn actors the socket talks to, such as an AuthStore).
func newSockEnvIn(t *testing.T, setup func(*fakeServer), mut func(*actor.ActorSystem, *SocketConfig)) *sockEnv {
	t.Helper()
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	srv := newFakeServer(t)
	if setup != nil {
		setup(srv)
	}
	clock := wstest.NewClock(time.Unix(1_700_000_000, 0))
	cfg := SocketConfig{
		URL:            srv.url,
		Lazy:           true,
		InitialHeaders: http.Header{"Authorization": {"Bearer T1"}},
		JoinID:         "room:42",
		AckTimeout:     tAckTimeout,
		PingInterval:   tPingInterval,
		PingGrace:      tPingGrace,
		Clock:          clock,
		Rand:           rand.New(rand.NewPCG(1, 2)),
		Logger:         zaptest.NewLogger(t),
	}
	mut(sys, &cfg)
	pid := sys.Root.Spawn(NewSocketConnProps(cfg))
	e := &sockEnv{t: t, sys: sys, pid: pid, srv: srv, clock: clock, cfg: &cfg}
	t.Cleanup(func() { e.stop() })
	return e
}

// stop stops the actor and waits for it.
func (e *sockEnv) stop() {
	_ = StopAndWait(context.Background(), e.sys, e.pid)
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sockAsk[T any](t *testing.T, e *sockEnv, msg any) T {
	t.Helper()
	r, err := AskAs[T](tctx(t), e.sys, e.pid, msg)
	if err != nil {
		t.Fatalf("ask %T: %v", msg, err)
	}
	return r
}

func (e *sockEnv) listen(event string) *SocketListener {
	e.t.Helper()
	return sockAsk[*SocketListener](e.t, e, &messages.Listen{Event: event})
}

func (e *sockEnv) state() *messages.State {
	e.t.Helper()
	return sockAsk[*messages.State](e.t, e, &messages.GetState{})
}

// waitState asks GetState until cond holds (each round trip goes through
// the mailbox; bounded by a 10s context).
func (e *sockEnv) waitState(what string, cond func(*messages.State) bool) *messages.State {
	e.t.Helper()
	ctx := tctx(e.t)
	for {
		st, err := AskAs[*messages.State](ctx, e.sys, e.pid, &messages.GetState{})
		if err != nil {
			e.t.Fatalf("waiting for %s: %v", what, err)
		}
		if cond(st) {
			return st
		}
	}
}

// connect does the handshake on the next connection with default answers
// and returns it after the join.
func (e *sockEnv) acceptJoined() *fakeConn {
	e.t.Helper()
	c := e.srv.accept(e.t)
	c.nextType(e.t, "init")
	c.nextType(e.t, "join")
	e.waitState("connected", func(s *messages.State) bool { return s.State == messages.SocketConnected && s.PendingAcks == 0 })
	return c
}

// shortTimers returns the pending fake-clock timers under a minute (the
// reconnect backoff and linger timers; ack and ping timers are longer).
func shortTimers(p []time.Duration) []time.Duration {
	var out []time.Duration
	for _, d := range p {
		if d < time.Minute {
			out = append(out, d)
		}
	}
	return out
}

// waitReconnectTimer waits for exactly one short timer and returns it.
func (e *sockEnv) waitShortTimer() time.Duration {
	e.t.Helper()
	if err := e.clock.WaitFor(tctx(e.t), func(p []time.Duration) bool { return len(shortTimers(p)) == 1 }); err != nil {
		e.t.Fatalf("no reconnect timer scheduled: pending %v", e.clock.Pending())
	}
	return shortTimers(e.clock.Pending())[0]
}

func recvEvent(t *testing.T, l *SocketListener) messages.SocketEvent {
	t.Helper()
	select {
	case ev, ok := <-l.C:
		if !ok {
			t.Fatalf("listener closed: %v", l.Err())
		}
		return ev
	case <-tctx(t).Done():
		t.Fatalf("no event")
		return messages.SocketEvent{}
	}
}

func waitClosedListener(t *testing.T, l *SocketListener) error {
	t.Helper()
	ctx := tctx(t)
	for {
		select {
		case _, ok := <-l.C:
			if !ok {
				return l.Err()
			}
		case <-ctx.Done():
			t.Fatalf("listener not closed")
			return nil
		}
	}
}

func TestSocketRow01_LazyNoListenersNoDial(t *testing.T) {
	e := newSockEnv(t, nil)
	sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T2"}}})
	st := e.state()
	if st.State != messages.SocketIdle || st.Generation != 0 {
		t.Fatalf("state %v gen %d, want idle and no dial", st.State, st.Generation)
	}
	if n := e.srv.nupgrade.Load(); n != 0 {
		t.Fatalf("server saw %d dials, want 0", n)
	}
}

func TestSocketRow02_DialInitThenJoinAfterInitAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		lazy bool
	}{{"lazy first Listen", true}, {"eager start", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var headerCalls []http.Header
			var inits = make(chan fakeFrame, 1)
			e := newSockEnvWith(t, func(srv *fakeServer) {
				srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
					if f.Type == "init" {
						inits <- f
						return true // the test answers
					}
					return false
				})
			}, func(c *SocketConfig) {
				c.Lazy = tc.lazy
				c.Headers = func(ctx context.Context, rejected http.Header) (http.Header, error) {
					headerCalls = append(headerCalls, rejected) // one dial at a time: no race
					return http.Header{"Authorization": {"Bearer FROM-SOURCE"}}, nil
				}
			})
			if tc.lazy {
				if st := e.state(); st.Generation != 0 {
					t.Fatalf("lazy actor dialed before Listen")
				}
				e.listen("message")
			}
			c := e.srv.accept(t)
			if got := c.req.Header.Get("Authorization"); got != "Bearer FROM-SOURCE" {
				t.Fatalf("handshake Authorization %q", got)
			}
			init := c.nextType(t, "init")
			<-inits
			if got := init.header("Authorization"); got != "Bearer FROM-SOURCE" {
				t.Fatalf("init Authorization %q, want the header source's", got)
			}
			if st := e.state(); st.State != messages.SocketConnecting {
				t.Fatalf("state before init_ack %v", st.State)
			}
			c.send(map[string]any{"type": "init_ack", "id": init.ID, "payload": map[string]any{"session": "s9"}})
			join := c.nextType(t, "join")
			if !join.afterAck {
				t.Fatalf("join was sent before init_ack")
			}
			if string(join.field("channel")) != `"room:42"` {
				t.Fatalf("join payload %s", join.Payload)
			}
			st := e.waitState("connected", func(s *messages.State) bool { return s.State == messages.SocketConnected })
			if st.Session != "s9" || len(headerCalls) != 1 || headerCalls[0] != nil {
				t.Fatalf("session %q header calls %v", st.Session, headerCalls)
			}
		})
	}
}

func TestSocketRow03_LastListenerLeavesThenClose(t *testing.T) {
	t.Run("linger 0", func(t *testing.T) {
		e := newSockEnv(t, nil)
		l := e.listen("message")
		c := e.acceptJoined()
		_ = l.Close()
		leave := c.nextType(t, "leave")
		if string(leave.field("channel")) != `"room:42"` {
			t.Fatalf("leave payload %s", leave.Payload)
		}
		assertCloseCode(t, c.waitClosed(t), 1000)
		if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrClosed) {
			t.Fatalf("listener err %v", err)
		}
		e.waitState("idle", func(s *messages.State) bool { return s.State == messages.SocketIdle })
	})
	t.Run("listen during linger cancels it", func(t *testing.T) {
		const linger = 5 * time.Second
		e := newSockEnv(t, func(c *SocketConfig) { c.Linger = linger })
		l1 := e.listen("message")
		c := e.acceptJoined()
		_ = l1.Close()
		if got := e.waitShortTimer(); got != linger {
			t.Fatalf("linger timer %v", got)
		}
		l2 := e.listen("message")
		if err := e.clock.WaitFor(tctx(t), func(p []time.Duration) bool { return len(shortTimers(p)) == 0 }); err != nil {
			t.Fatal("linger timer not cancelled")
		}
		e.clock.Advance(linger)
		c.event("room:42", "message", 1, `{"n":1}`)
		if ev := recvEvent(t, l2); ev.Position.Seq != 1 {
			t.Fatalf("event %+v", ev)
		}
		_ = l2.Close()
		e.waitShortTimer()
		e.clock.Advance(linger)
		c.nextType(t, "leave")
		assertCloseCode(t, c.waitClosed(t), 1000)
	})
}

func assertCloseCode(t *testing.T, err error, code int) {
	t.Helper()
	var ce *wsCloseError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("server read error %v, want close %d", err, code)
	}
}

func TestSocketRow04_UpdateHeadersOnLiveConnection(t *testing.T) {
	t.Run("one update, joins untouched", func(t *testing.T) {
		e := newSockEnv(t, nil)
		e.listen("message")
		c := e.acceptJoined()
		r := sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T2"}}})
		if !r.Sent {
			t.Fatal("update not sent")
		}
		u := c.nextType(t, "update")
		if u.header("Authorization") != "Bearer T2" {
			t.Fatalf("update payload %s", u.Payload)
		}
		e.waitState("update acked", func(s *messages.State) bool { return s.PendingAcks == 0 })
		// Prove nothing else went out: the next frame is our emit.
		sockAsk[*messages.EmitResult](t, e, &messages.Emit{Event: "x", WantAck: true})
		c.nextType(t, "emit")
		if n := e.srv.nconn.Load(); n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
	})
	t.Run("ack timeout reconnects", func(t *testing.T) {
		e := newSockEnv(t, nil)
		e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool { return f.Type == "update" })
		e.listen("message")
		c := e.acceptJoined()
		sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T2"}}})
		c.nextType(t, "update")
		e.clock.Advance(tAckTimeout)
		c.waitClosed(t)
		e.clock.Advance(e.waitShortTimer())
		c2 := e.srv.accept(t)
		if h := c2.nextType(t, "init").header("Authorization"); h != "Bearer T2" {
			t.Fatalf("re-init carries %q", h)
		}
	})
	t.Run("error is terminal", func(t *testing.T) {
		e := newSockEnv(t, nil)
		e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
			if f.Type != "update" {
				return false
			}
			c.send(map[string]any{"type": "error", "id": f.ID, "payload": map[string]any{"code": "forbidden", "message": "no"}})
			return true
		})
		l := e.listen("message")
		c := e.acceptJoined()
		sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T2"}}})
		var se *messages.SocketServerError
		if err := waitClosedListener(t, l); !errors.As(err, &se) || se.Code != "forbidden" {
			t.Fatalf("listener err %v", err)
		}
		c.waitClosed(t)
		st := e.state()
		if st.State != messages.SocketFailed || len(shortTimers(e.clock.Pending())) != 0 {
			t.Fatalf("state %v timers %v", st.State, e.clock.Pending())
		}
	})
}

func TestSocketRow05_HeadersCachedWhileIdleOrReconnecting(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := newSockEnv(t, nil)
		sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T2"}}})
		sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T3"}}})
		e.listen("")
		c := e.srv.accept(t)
		if h := c.nextType(t, "init").header("Authorization"); h != "Bearer T3" {
			t.Fatalf("init carries %q, want the newest", h)
		}
	})
	t.Run("reconnecting", func(t *testing.T) {
		e := newSockEnv(t, nil)
		e.listen("")
		c := e.acceptJoined()
		c.drop()
		e.waitShortTimer()
		r := sockAsk[*messages.HeadersUpdated](t, e, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer T4"}}})
		if r.Sent {
			t.Fatal("update sent while reconnecting")
		}
		e.clock.Advance(e.waitShortTimer())
		c2 := e.srv.accept(t)
		if h := c2.nextType(t, "init").header("Authorization"); h != "Bearer T4" {
			t.Fatalf("init carries %q", h)
		}
		if f := c2.nextType(t, "join"); f.Type != "join" {
			t.Fatal("no join")
		}
	})
}

func TestSocketRow06_ReconnectBackoff(t *testing.T) {
	const base, max = 200 * time.Millisecond, 20 * time.Second
	t.Run("full jitter, reset after a stable connection", func(t *testing.T) {
		twin := ws.NewBackoff(base, max, rand.New(rand.NewPCG(1, 2)))
		e := newSockEnv(t, nil)
		failing := make(chan bool, 1)
		failing <- true
		e.srv.setUpgrade(func(r *http.Request) int {
			f := <-failing
			failing <- f
			if f {
				return http.StatusServiceUnavailable
			}
			return 0
		})
		e.listen("")
		for n := 0; n < 4; n++ {
			got := e.waitShortTimer()
			if want := twin.Delay(n); got != want {
				t.Fatalf("attempt %d: delay %v, want %v", n, got, want)
			}
			if got > twin.Cap(n) {
				t.Fatalf("attempt %d: delay %v above cap %v", n, got, twin.Cap(n))
			}
			if n == 3 {
				<-failing
				failing <- false
			}
			e.clock.Advance(got)
		}
		c := e.acceptJoined()
		e.clock.Advance(DefaultSocketStableAfter) // it stays up: healthy
		c.closeWith(4000, "bye")
		if got, want := e.waitShortTimer(), twin.Delay(0); got != want {
			t.Fatalf("after reset: delay %v, want %v", got, want)
		}
	})
	t.Run("a connection lost before it was stable keeps the backoff growing", func(t *testing.T) {
		twin := ws.NewBackoff(base, max, rand.New(rand.NewPCG(1, 2)))
		e := newSockEnv(t, nil)
		e.listen("")
		for n := 0; n < 3; n++ {
			c := e.acceptJoined()
			e.clock.Advance(DefaultSocketStableAfter - time.Millisecond) // up, but not long enough
			c.closeWith(4000, "flap")
			got := e.waitShortTimer()
			if want := twin.Delay(n); got != want {
				t.Fatalf("flap %d: delay %v, want %v (attempt %d's)", n, got, want, n)
			}
			e.clock.Advance(got)
		}
		if st := e.waitState("reconnected", func(s *messages.State) bool { return s.State == messages.SocketConnected }); st.Attempt != 3 {
			t.Fatalf("attempt %d after three flaps, want 3", st.Attempt)
		}
	})
	for _, tc := range []struct {
		name  string
		close func(c *fakeConn)
	}{
		{"1001", func(c *fakeConn) { c.closeWith(1001, "going away") }},
		{"1006", func(c *fakeConn) { c.drop() }},
		{"4000", func(c *fakeConn) { c.closeWith(4000, "") }},
		{"4004 server restart", func(c *fakeConn) { c.closeWith(4004, "restart") }},
		{"4499", func(c *fakeConn) { c.closeWith(4499, "") }},
	} {
		t.Run("reconnect after "+tc.name, func(t *testing.T) {
			e := newSockEnv(t, nil)
			e.listen("")
			tc.close(e.acceptJoined())
			e.clock.Advance(e.waitShortTimer())
			e.acceptJoined()
		})
	}
	t.Run("max attempts is terminal", func(t *testing.T) {
		e := newSockEnv(t, func(c *SocketConfig) { c.MaxReconnectAttempts = 2 })
		e.srv.setUpgrade(func(*http.Request) int { return http.StatusServiceUnavailable })
		l := e.listen("")
		for i := 0; i < 2; i++ {
			e.clock.Advance(e.waitShortTimer())
		}
		if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrReconnectExhausted) {
			t.Fatalf("listener err %v", err)
		}
		if n := e.srv.nupgrade.Load(); n != 3 {
			t.Fatalf("%d dials, want 3", n)
		}
	})
}

func TestSocketRow07_TerminalCloseCode(t *testing.T) {
	for _, code := range []int{4500, 4501, 4999} {
		t.Run(itoa(code), func(t *testing.T) {
			e := newSockEnv(t, nil)
			l1, l2 := e.listen("a"), e.listen("b")
			c := e.acceptJoined()
			c.closeWith(code, "terminal")
			for _, l := range []*SocketListener{l1, l2} {
				var ce *messages.SocketCloseError
				if err := waitClosedListener(t, l); !errors.As(err, &ce) || ce.Code != code {
					t.Fatalf("listener err %v", err)
				}
			}
			st := e.state()
			if st.State != messages.SocketFailed || len(shortTimers(e.clock.Pending())) != 0 || e.srv.nupgrade.Load() != 1 {
				t.Fatalf("state %v timers %v dials %d", st.State, e.clock.Pending(), e.srv.nupgrade.Load())
			}
			if _, err := Ask(tctx(t), e.sys, e.pid, &messages.Listen{}); !errors.As(err, new(*messages.SocketCloseError)) {
				t.Fatalf("Listen after terminal: %v", err)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
