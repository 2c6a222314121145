package actors

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// connectAsync sends Connect and returns the channel its one answer
// arrives on.
func (e *sockEnv) connectAsync() <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := AskAs[*messages.Connected](tctx(e.t), e.sys, e.pid, &messages.Connect{})
		done <- err
	}()
	return done
}

// Connect answers only after the JoinID join is acknowledged: a caller
// that emits or relies on room traffic right after it is in the room.
func TestSocketConnect_AnswersAfterJoinAck(t *testing.T) {
	joins := make(chan fakeFrame, 1)
	e := newSockEnvWith(t, func(s *fakeServer) {
		s.setHandle(func(c *fakeConn, f fakeFrame) bool {
			if f.Type != "join" {
				return false
			}
			joins <- f // held: the test acks it
			return true
		})
	}, nil)
	done := e.connectAsync()
	c := e.srv.accept(t)
	var join fakeFrame
	select {
	case join = <-joins:
	case <-tctx(t).Done():
		t.Fatal("no join")
	}
	st := e.waitState("joining", func(s *messages.State) bool { return s.Step == "joining room:42" })
	if st.State != messages.SocketConnected {
		t.Fatalf("state %v", st.State)
	}
	select {
	case err := <-done:
		t.Fatalf("Connect answered (%v) before the join was acknowledged", err)
	default:
	}
	c.send(map[string]any{"type": "ack", "id": join.ID, "payload": map[string]any{"channel": "room:42", "epoch": "e1", "seq": 0}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Connect answers with the cause when the attempt fails: the handshake's
// HTTP status, the dial error, the join rejection's code and message. It
// never waits for the caller's deadline.
func TestSocketConnect_ReportsWhyTheAttemptFailed(t *testing.T) {
	t.Run("handshake 500", func(t *testing.T) {
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setUpgrade(func(*http.Request) int { return http.StatusInternalServerError })
		}, nil)
		err := <-e.connectAsync()
		var hs *ws.HandshakeError
		if !errors.As(err, &hs) || hs.StatusCode != http.StatusInternalServerError {
			t.Fatalf("Connect = %v, want a handshake error with 500", err)
		}
		if st := e.state(); !errors.As(st.LastErr, &hs) {
			t.Fatalf("state LastErr = %v", st.LastErr)
		}
	})
	t.Run("handshake 403 twice", func(t *testing.T) {
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setUpgrade(func(*http.Request) int { return http.StatusForbidden })
		}, nil)
		err := <-e.connectAsync()
		var re *messages.SocketRejectedError
		var hs *ws.HandshakeError
		if !errors.As(err, &re) || !errors.As(err, &hs) || hs.StatusCode != http.StatusForbidden {
			t.Fatalf("Connect = %v, want a rejection carrying HTTP 403", err)
		}
	})
	t.Run("dial refused", func(t *testing.T) {
		e := newSockEnvWith(t, func(s *fakeServer) { s.close() }, nil)
		err := <-e.connectAsync()
		if err == nil || !strings.Contains(err.Error(), "dial") {
			t.Fatalf("Connect = %v, want the dial error", err)
		}
	})
	t.Run("join rejected", func(t *testing.T) {
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setHandle(func(c *fakeConn, f fakeFrame) bool {
				if f.Type != "join" {
					return false
				}
				c.send(map[string]any{"type": "error", "id": f.ID, "payload": map[string]any{"code": "forbidden", "message": "not in room:42"}})
				return true
			})
		}, nil)
		err := <-e.connectAsync()
		var se *messages.SocketServerError
		if !errors.As(err, &se) || se.Code != "forbidden" || se.Message != "not in room:42" {
			t.Fatalf("Connect = %v, want the server's code and message", err)
		}
	})
}

// Listeners given in SocketConfig are adopted before the dial: the event
// a server sends right after init_ack reaches them on every connection.
func TestSocketListeners_AdoptedBeforeDial(t *testing.T) {
	for i := 0; i < 10; i++ {
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setHandle(func(c *fakeConn, f fakeFrame) bool {
				if f.Type != "init" {
					return false
				}
				c.send(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s"}})
				c.send(map[string]any{"type": "event", "payload": map[string]any{"channel": "", "event": "welcome", "data": map[string]any{"n": i}}})
				return true
			})
		}, func(c *SocketConfig) {
			c.Lazy = false
			c.Listeners = []*SocketListener{NewSocketListener("welcome", 0)}
		})
		l := e.listenerOf(t, 0)
		if ev := recvEvent(t, l); ev.Name != "welcome" {
			t.Fatalf("connection %d: first event %+v", i, ev)
		}
	}
}

// listenerOf returns the i-th listener the test gave the actor's config.
func (e *sockEnv) listenerOf(t *testing.T, i int) *SocketListener {
	t.Helper()
	if e.cfg == nil || i >= len(e.cfg.Listeners) {
		t.Fatalf("no configured listener %d", i)
	}
	return e.cfg.Listeners[i]
}

// A listener closed before any actor adopted it ends at once with
// ErrClosed, and an actor given it ignores it.
func TestSocketListeners_ClosedBeforeAdoption(t *testing.T) {
	l := NewSocketListener("", 0)
	_ = l.Close()
	if _, ok := <-l.C; ok || !errors.Is(l.Err(), messages.ErrClosed) {
		t.Fatalf("closed listener: err %v", l.Err())
	}
	e := newSockEnv(t, func(c *SocketConfig) { c.Listeners = []*SocketListener{l} })
	if st := e.state(); st.Listeners != 0 || st.Generation != 0 {
		t.Fatalf("state %+v: the ended listener was adopted", st)
	}
}

// A panicking interceptor fails the socket with a *messages.PanicError:
// the Connect waiter and every listener get it, and the process lives.
func TestSocketInterceptor_PanicBecomesError(t *testing.T) {
	t.Run("outbound init", func(t *testing.T) {
		e := newSockEnv(t, func(c *SocketConfig) {
			c.Interceptors = []SocketInterceptor{func(SocketDirection, wire.Frame) (wire.Frame, bool) { panic("boom") }}
		})
		l := e.listen("")
		err := <-e.connectAsync()
		var pe *messages.PanicError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Connect = %v, want the interceptor's panic", err)
		}
		if err := waitClosedListener(t, l); !errors.As(err, &pe) {
			t.Fatalf("listener err %v", err)
		}
		if st := e.state(); st.State != messages.SocketFailed {
			t.Fatalf("state %v", st.State)
		}
	})
	t.Run("outbound emit", func(t *testing.T) {
		e := newSockEnv(t, func(c *SocketConfig) {
			c.Interceptors = []SocketInterceptor{func(dir SocketDirection, f wire.Frame) (wire.Frame, bool) {
				if strings.Contains(string(f.Data), `"emit"`) {
					panic("emit boom")
				}
				return f, true
			}}
		})
		l := e.listen("")
		e.acceptJoined()
		_, err := AskAs[*messages.EmitResult](tctx(t), e.sys, e.pid, &messages.Emit{Event: "m", Data: []byte(`1`)})
		var pe *messages.PanicError
		if !errors.As(err, &pe) || errors.Is(err, messages.ErrBufferFull) {
			t.Fatalf("Emit = %v, want the panic (not buffer full)", err)
		}
		if err := waitClosedListener(t, l); !errors.As(err, &pe) {
			t.Fatalf("listener err %v", err)
		}
	})
	t.Run("inbound", func(t *testing.T) {
		e := newSockEnv(t, func(c *SocketConfig) {
			c.Interceptors = []SocketInterceptor{func(dir SocketDirection, f wire.Frame) (wire.Frame, bool) {
				if dir == SocketInbound && strings.Contains(string(f.Data), `"event"`) {
					panic("inbound boom")
				}
				return f, true
			}}
		})
		l := e.listen("")
		c := e.acceptJoined()
		c.event("room:42", "m", 1, `1`)
		var pe *messages.PanicError
		if err := waitClosedListener(t, l); !errors.As(err, &pe) || !strings.Contains(err.Error(), "inbound boom") {
			t.Fatalf("listener err %v", err)
		}
	})
}

// panicCodec is pigeon.v1 whose Decode panics on frames containing
// "crash": a bug below the interceptors, so the supervisor restarts the
// actor.
type panicCodec struct{ wire.Codec }

func (c panicCodec) Decode(f wire.Frame) ([]wire.Msg, error) {
	if strings.Contains(string(f.Data), "crash") {
		panic("codec crash")
	}
	return c.Codec.Decode(f)
}

// A restart fails every listener and Connect waiter with an error wrapping
// ErrActorRestarted (naming the panic when there was one); the new
// incarnation starts clean and ignores what the old one's goroutines and
// timers still deliver.
func TestSocketRestart_FailsListenersAndWaiters(t *testing.T) {
	t.Run("panic", func(t *testing.T) {
		e := newSockEnv(t, func(c *SocketConfig) { c.Codec = panicCodec{wire.ForURL(c.URL)} })
		l := e.listen("")
		c := e.acceptJoined()
		c.event("room:42", "crash", 1, `1`)
		err := waitClosedListener(t, l)
		if !errors.Is(err, messages.ErrActorRestarted) || !strings.Contains(err.Error(), "codec crash") {
			t.Fatalf("listener err %v", err)
		}
		// The new incarnation is lazy with no listeners: idle, and it
		// answers.
		e.waitState("idle after restart", func(s *messages.State) bool { return s.State == messages.SocketIdle && s.Listeners == 0 })
		l2 := e.listen("")
		c2 := e.acceptJoined()
		c2.event("room:42", "m", 1, `2`)
		if ev := recvEvent(t, l2); ev.Name != "m" {
			t.Fatalf("event after restart %+v", ev)
		}
	})
	t.Run("supervisor restart while connecting", func(t *testing.T) {
		inits := make(chan struct{}, 4)
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setHandle(func(c *fakeConn, f fakeFrame) bool {
				if f.Type == "init" {
					inits <- struct{}{} // never answered
					return true
				}
				return false
			})
		}, nil)
		done := e.connectAsync() // lazy: this Connect makes the dial
		<-inits
		l := e.listen("")
		e.waitState("waiting for init_ack", func(s *messages.State) bool { return s.Step == "handshake" })
		proc, _ := e.sys.ProcessRegistry.Get(e.pid)
		proc.SendSystemMessage(e.pid, &actor.Restart{})
		if err := <-done; !errors.Is(err, messages.ErrActorRestarted) {
			t.Fatalf("Connect = %v", err)
		}
		if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrActorRestarted) {
			t.Fatalf("listener err %v", err)
		}
	})
}

// A Disconnect with Err ends listeners with that error.
func TestSocketDisconnect_WithCause(t *testing.T) {
	e := newSockEnv(t, nil)
	l := e.listen("")
	e.acceptJoined()
	cause := errors.New("init failed")
	if _, err := AskAs[*messages.Disconnected](context.Background(), e.sys, e.pid, &messages.Disconnect{Err: cause}); err != nil {
		t.Fatal(err)
	}
	if err := waitClosedListener(t, l); !errors.Is(err, cause) {
		t.Fatalf("listener err %v", err)
	}
}

// FailFast: the first attempt's failure is terminal; nothing redials.
func TestSocketConnect_FailFastStopsAfterTheFirstAttempt(t *testing.T) {
	e := newSockEnvWith(t, func(s *fakeServer) {
		s.setUpgrade(func(*http.Request) int { return http.StatusServiceUnavailable })
	}, func(c *SocketConfig) { c.FailFast = true })
	err := <-e.connectAsync()
	var hs *ws.HandshakeError
	if !errors.As(err, &hs) || hs.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Connect = %v", err)
	}
	st := e.state()
	if st.State != messages.SocketFailed || len(shortTimers(e.clock.Pending())) != 0 || e.srv.nupgrade.Load() != 1 {
		t.Fatalf("state %v, timers %v, %d dials: want failed, no reconnect, 1 dial", st.State, e.clock.Pending(), e.srv.nupgrade.Load())
	}
}

// FailFast: a Connect that arrives after an eager actor's first attempt
// failed gets that failure; it does not dial again.
func TestSocketConnect_FailFastConnectAfterTheFailure(t *testing.T) {
	e := newSockEnvWith(t, func(s *fakeServer) {
		s.setUpgrade(func(*http.Request) int { return http.StatusInternalServerError })
	}, func(c *SocketConfig) { c.FailFast, c.Lazy = true, false })
	e.waitState("failed", func(s *messages.State) bool { return s.State == messages.SocketFailed })
	var hs *ws.HandshakeError
	if err := <-e.connectAsync(); !errors.As(err, &hs) || hs.StatusCode != http.StatusInternalServerError {
		t.Fatalf("Connect = %v", err)
	}
	if n := e.srv.nupgrade.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
}
