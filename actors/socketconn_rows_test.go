package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

func TestSocketRow08_RejectedFetchesFreshHeadersOnce(t *testing.T) {
	type call struct{ rejected http.Header }
	newEnv := func(t *testing.T) (*sockEnv, chan call) {
		calls := make(chan call, 16)
		var n atomic.Int64
		e := newSockEnv(t, func(c *SocketConfig) {
			c.Headers = func(ctx context.Context, rejected http.Header) (http.Header, error) {
				calls <- call{rejected}
				return http.Header{"Authorization": {fmt.Sprintf("Bearer V%d", n.Add(1))}}, nil
			}
		})
		return e, calls
	}
	t.Run("4003 then fresh headers", func(t *testing.T) {
		e, calls := newEnv(t)
		e.listen("")
		c := e.acceptJoined()
		<-calls
		c.closeWith(4003, "token expired")
		c2 := e.srv.accept(t) // retried at once, no backoff timer
		if got := (<-calls).rejected.Get("Authorization"); got != "Bearer V1" {
			t.Fatalf("header source got rejected %q, want the old headers", got)
		}
		if h := c2.nextType(t, "init").header("Authorization"); h != "Bearer V2" {
			t.Fatalf("re-init carries %q", h)
		}
		c2.nextType(t, "join")
		e.waitState("connected", func(s *messages.State) bool { return s.State == messages.SocketConnected })
	})
	t.Run("init rejected twice is terminal", func(t *testing.T) {
		e, calls := newEnv(t)
		e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
			if f.Type != "init" {
				return false
			}
			c.send(map[string]any{"type": "error", "id": f.ID, "payload": map[string]any{"code": "unauthorized", "message": "bad token"}})
			return true
		})
		l := e.listen("")
		var re *messages.SocketRejectedError
		if err := waitClosedListener(t, l); !errors.As(err, &re) {
			t.Fatalf("listener err %v", err)
		}
		if n := e.srv.nupgrade.Load(); n != 2 {
			t.Fatalf("%d dials, want 2", n)
		}
		first, second := <-calls, <-calls
		if first.rejected != nil || second.rejected.Get("Authorization") != "Bearer V1" {
			t.Fatalf("header calls %v %v", first, second)
		}
	})
	t.Run("handshake 401 twice is terminal", func(t *testing.T) {
		e, _ := newEnv(t)
		e.srv.setUpgrade(func(*http.Request) int { return http.StatusUnauthorized })
		l := e.listen("")
		if err := waitClosedListener(t, l); !errors.As(err, new(*messages.SocketRejectedError)) {
			t.Fatalf("listener err %v", err)
		}
	})
}

func TestSocketRow09_RejoinWithLastPositionAndGap(t *testing.T) {
	e := newSockEnv(t, nil)
	var recovered atomic.Bool
	recovered.Store(true)
	joins := make(chan fakeFrame, 4)
	e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
		if f.Type != "join" {
			return false
		}
		joins <- f
		c.send(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{"channel": "room:42", "epoch": "e1", "seq": 3, "recovered": recovered.Load()}})
		return true
	})
	l := e.listen("")
	c := e.acceptJoined()
	<-joins
	for seq := uint64(4); seq <= 5; seq++ {
		c.event("room:42", "message", seq, `{}`)
		recvEvent(t, l)
	}
	recovered.Store(false)
	c.drop()
	e.clock.Advance(e.waitShortTimer())
	c2 := e.acceptJoined()
	j := <-joins
	if got := string(j.field("since")); got != `{"epoch":"e1","seq":5}` {
		t.Fatalf("rejoin since %s", got)
	}
	c2.event("room:42", "message", 9, `{"n":9}`)
	gap := recvEvent(t, l)
	if !gap.Gap || gap.Name != messages.SocketGapEvent || gap.Channel != "room:42" {
		t.Fatalf("first event after rejoin %+v, want gap", gap)
	}
	if ev := recvEvent(t, l); ev.Position.Seq != 9 {
		t.Fatalf("event %+v", ev)
	}
}

func TestSocketRow10_SeqDedupe(t *testing.T) {
	e := newSockEnv(t, nil)
	l := e.listen("message")
	c := e.acceptJoined()
	for _, seq := range []uint64{1, 2, 2, 1, 3} {
		c.event("room:42", "message", seq, fmt.Sprintf(`{"seq":%d}`, seq))
	}
	var got []uint64
	for len(got) < 3 {
		got = append(got, recvEvent(t, l).Position.Seq)
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("seqs %v", got)
	}
	if st := e.waitState("dups", func(s *messages.State) bool { return s.Duplicates == 2 }); st.Positions["room:42"].Seq != 3 {
		t.Fatalf("position %+v", st.Positions)
	}
}

func TestSocketRow11_SlowListenerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  messages.OverflowPolicy
		want    []uint64
		dropped uint64
		wantErr error
	}{
		{"drop oldest", messages.OverflowDropOldest, []uint64{4, 5}, 3, nil},
		{"drop newest", messages.OverflowDropNewest, []uint64{1, 2}, 3, nil},
		{"close", messages.OverflowClose, []uint64{1, 2}, 1, messages.ErrSlowConsumer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSockEnv(t, func(c *SocketConfig) { c.ListenerQueue = 2; c.Overflow = tc.policy })
			slow := e.listen("message")
			fast := e.listen("message")
			c := e.acceptJoined()
			var fastGot []uint64
			for seq := uint64(1); seq <= 5; seq++ {
				c.event("room:42", "message", seq, `{}`)
				fastGot = append(fastGot, recvEvent(t, fast).Position.Seq) // fast keeps up
			}
			if !slices.Equal(fastGot, []uint64{1, 2, 3, 4, 5}) {
				t.Fatalf("fast listener got %v", fastGot)
			}
			// The fast listener may be offered an event before the slow
			// one (map order): a round trip through the mailbox waits for
			// the last broadcast to finish.
			st := e.state()
			var slowGot []uint64
			for i := 0; i < 2; i++ {
				slowGot = append(slowGot, recvEvent(t, slow).Position.Seq)
			}
			if !slices.Equal(slowGot, tc.want) || slow.Dropped() != tc.dropped {
				t.Fatalf("slow listener got %v dropped %d", slowGot, slow.Dropped())
			}
			if tc.wantErr != nil {
				if err := waitClosedListener(t, slow); !errors.Is(err, tc.wantErr) {
					t.Fatalf("slow err %v", err)
				}
			} else if err := slow.Err(); err != nil {
				t.Fatalf("slow err %v", err)
			}
			if st.Dropped != tc.dropped {
				t.Fatalf("state dropped %d", st.Dropped)
			}
		})
	}
}

func TestSocketRow12_EmitBufferWhileDisconnected(t *testing.T) {
	e := newSockEnv(t, func(c *SocketConfig) { c.BufferCount = 3; c.BufferBytes = 20; c.Lazy = true })
	var accept atomic.Bool
	e.srv.setUpgrade(func(*http.Request) int {
		if accept.Load() {
			return 0
		}
		return http.StatusServiceUnavailable
	})
	ctx := tctx(t)
	if _, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "a", Data: []byte(`"1234567890"`)}); err != nil {
		t.Fatalf("emit a: %v", err)
	}
	if _, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "big", Data: []byte(`"1234567890"`)}); !errors.Is(err, messages.ErrBufferFull) {
		t.Fatalf("byte overflow: %v", err)
	}
	acked := make(chan error, 1)
	go func() {
		_, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "b", WantAck: true})
		acked <- err
	}()
	e.waitState("b buffered", func(s *messages.State) bool { return s.Buffered == 2 })
	if _, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "c"}); err != nil {
		t.Fatalf("emit c: %v", err)
	}
	if _, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "d"}); !errors.Is(err, messages.ErrBufferFull) {
		t.Fatalf("count overflow: %v", err)
	}
	e.clock.Advance(tAckTimeout) // also fires the reconnect timers scheduled so far
	if err := <-acked; !errors.Is(err, messages.ErrAckTimeout) {
		t.Fatalf("buffered acked emit: %v", err)
	}
	d := e.waitShortTimer() // the dial fired by the advance failed too
	accept.Store(true)
	e.clock.Advance(d)
	c := e.srv.accept(t)
	c.nextType(t, "init")
	c.nextType(t, "join")
	for _, want := range []string{"a", "c"} {
		if got := string(c.nextType(t, "emit").field("event")); got != `"`+want+`"` {
			t.Fatalf("flushed emit %s, want %s", got, want)
		}
	}
}

func TestSocketRow13_ConcurrentEmitFlood(t *testing.T) {
	e := newSockEnv(t, func(c *SocketConfig) { c.WriteQueue = 4096 })
	e.listen("")
	c := e.acceptJoined()
	const workers, per = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				_, err := Ask(tctx(t), e.sys, e.pid, &messages.Emit{Event: "flood", Data: []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)), WantAck: i%2 == 0})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("emit: %v", err)
		}
	}
	for i := 0; i < workers*per; i++ {
		c.nextType(t, "emit")
	}
}

// countingConn counts Close calls on the client's TCP connection.
type countingConn struct {
	net.Conn
	closes *atomic.Int64
}

func (c countingConn) Close() error { c.closes.Add(1); return c.Conn.Close() }

func TestSocketRow14_ReadErrorClosesOnce(t *testing.T) {
	var mu sync.Mutex
	var counters []*atomic.Int64
	e := newSockEnv(t, func(c *SocketConfig) {
		c.Dial.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			n := new(atomic.Int64)
			mu.Lock()
			counters = append(counters, n)
			mu.Unlock()
			return countingConn{nc, n}, nil
		}
	})
	e.listen("")
	c := e.acceptJoined()
	c.drop() // the client's reader gets a read error
	e.clock.Advance(e.waitShortTimer())
	e.acceptJoined()
	e.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(counters) != 2 {
		t.Fatalf("%d dials", len(counters))
	}
	for i, n := range counters {
		if got := n.Load(); got != 1 {
			t.Fatalf("connection %d closed %d times, want 1", i, got)
		}
	}
}

func TestSocketRow15_PingTimeoutReconnects(t *testing.T) {
	const interval, grace = 25 * time.Second, 10 * time.Second
	e := newSockEnv(t, func(c *SocketConfig) { c.PingInterval = interval; c.PingGrace = grace })
	e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool { return f.Type == "ping" }) // never pong
	e.listen("")
	c := e.acceptJoined()
	e.clock.Advance(interval)
	select {
	case f := <-c.frames:
		if f.Type != "ping" {
			t.Fatalf("frame %q, want ping", f.Type)
		}
	case <-tctx(t).Done():
		t.Fatal("no ping")
	}
	if err := e.clock.WaitFor(tctx(t), func(p []time.Duration) bool { return slices.Contains(p, grace) }); err != nil {
		t.Fatalf("watchdog not re-armed: %v", e.clock.Pending())
	}
	e.clock.Advance(grace)
	c.waitClosed(t)
	e.clock.Advance(e.waitShortTimer())
	e.acceptJoined()
}

func TestSocketRow16_DisconnectIdempotentDuringReconnect(t *testing.T) {
	e := newSockEnv(t, nil)
	e.srv.setUpgrade(func(*http.Request) int { return http.StatusServiceUnavailable })
	l := e.listen("")
	e.waitShortTimer() // reconnecting
	ctx := tctx(t)
	acked := make(chan error, 1)
	go func() {
		_, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "x", WantAck: true})
		acked <- err
	}()
	e.waitState("emit buffered", func(s *messages.State) bool { return s.Buffered == 1 })
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := AskAs[*messages.Disconnected](ctx, e.sys, e.pid, &messages.Disconnect{}); err != nil {
				t.Errorf("disconnect: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := <-acked; !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("pending ack: %v", err)
	}
	if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("listener: %v", err)
	}
	if _, err := Ask(ctx, e.sys, e.pid, &messages.Emit{Event: "y"}); !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("emit after disconnect: %v", err)
	}
	if st := e.state(); st.State != messages.SocketClosed || len(shortTimers(e.clock.Pending())) != 0 {
		t.Fatalf("state %v timers %v", st.State, e.clock.Pending())
	}
	e.stop()
	e.stop() // stopping twice is harmless; goleak in TestMain checks the goroutines
}

func TestSocketRow17_ReconnectsSpreadOverJitterWindow(t *testing.T) {
	const clients = 100
	const base = 200 * time.Millisecond
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	srv := newFakeServer(t)
	clock := wstest.NewClock(time.Unix(1_700_000_000, 0))
	var want []time.Duration
	for i := 0; i < clients; i++ {
		seed := uint64(i + 1)
		want = append(want, ws.NewBackoff(base, 0, rand.New(rand.NewPCG(seed, seed))).Delay(0))
		pid := sys.Root.Spawn(NewSocketConnProps(SocketConfig{
			URL: srv.url, JoinID: "room", AckTimeout: tAckTimeout, PingInterval: tPingInterval, PingGrace: tPingGrace,
			Clock: clock, Rand: rand.New(rand.NewPCG(seed, seed)), BackoffBase: base,
		}))
		t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, pid) })
	}
	var conns []*fakeConn
	for i := 0; i < clients; i++ {
		c := srv.accept(t)
		c.nextType(t, "init")
		c.nextType(t, "join")
		conns = append(conns, c)
	}
	for _, c := range conns { // server restart
		c.closeWith(4004, "restart")
	}
	if err := clock.WaitFor(tctx(t), func(p []time.Duration) bool { return len(shortTimers(p)) == clients }); err != nil {
		t.Fatalf("reconnect timers: %d", len(shortTimers(clock.Pending())))
	}
	got := shortTimers(clock.Pending())
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("scheduled delays differ from the seeded full-jitter delays")
	}
	// Spread: every delay inside [0, base], each quarter of the window used,
	// nearly all distinct.
	var quarters [4]int
	for _, d := range got {
		if d < 0 || d > base {
			t.Fatalf("delay %v outside [0,%v]", d, base)
		}
		quarters[min(3, int(d*4/base))]++
	}
	if slices.Contains(quarters[:], 0) || len(slices.Compact(slices.Clone(got))) < clients*9/10 {
		t.Fatalf("reconnects not spread: quarters %v", quarters)
	}
}

func TestSocketRow18_MalformedOrOversizedFrame(t *testing.T) {
	for _, tc := range []struct {
		name      string
		send      func(c *fakeConn)
		closeCode int
		wantCause func(error) bool
	}{
		{"malformed JSON", func(c *fakeConn) { c.sendRaw(websocket.TextMessage, []byte(`{"type":`)) }, 4502,
			func(err error) bool { return errors.As(err, new(*wire.DecodeError)) }},
		{"unknown type", func(c *fakeConn) { c.sendRaw(websocket.TextMessage, []byte(`{"type":"bogus"}`)) }, 4502,
			func(err error) bool { return errors.As(err, new(*wire.DecodeError)) }},
		{"binary frame", func(c *fakeConn) { c.sendRaw(websocket.BinaryMessage, []byte{0, 1, 2}) }, 4502,
			func(err error) bool { return errors.As(err, new(*wire.DecodeError)) }},
		{"oversized", func(c *fakeConn) { c.event("room:42", "message", 1, `"`+strings.Repeat("x", 4096)+`"`) }, 1009,
			func(err error) bool { return errors.Is(err, websocket.ErrReadLimit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSockEnv(t, func(c *SocketConfig) { c.Dial.ReadLimit = 1024 })
			l := e.listen("")
			c := e.acceptJoined()
			tc.send(c)
			err := waitClosedListener(t, l)
			var ce *messages.SocketCloseError
			if !errors.As(err, &ce) || ce.Code != tc.closeCode || !tc.wantCause(err) {
				t.Fatalf("listener err %v", err)
			}
			assertCloseCode(t, c.waitClosed(t), tc.closeCode)
			// The actor is still alive and answers.
			if st := e.state(); st.State != messages.SocketFailed {
				t.Fatalf("state %v", st.State)
			}
		})
	}
}
