package actors

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
)

// swallowFirstEmit makes the fake server ignore the emits of the first
// connection (no ack), as if the connection lost them. It goes by the
// connection, not by which emit the server handles first: the test reads
// a frame before the server's handler has run, so the resend on the next
// connection can reach the handler before the first emit does.
func swallowFirstEmit(e *sockEnv) {
	e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
		if f.Type != "emit" {
			return false
		}
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		return len(c.s.all) > 0 && c.s.all[0] == c
	})
}

// emitAsync sends m and delivers the reply (or error) on the channel.
func emitAsync(e *sockEnv, m *messages.Emit) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := AskAs[*messages.EmitResult](tctx(e.t), e.sys, e.pid, m)
		done <- err
	}()
	return done
}

// reconnectAfterDrop drops c, lets the backoff pass and returns the next
// connection once it has joined.
func (e *sockEnv) reconnectAfterDrop(c *fakeConn) *fakeConn {
	e.t.Helper()
	c.drop()
	e.clock.Advance(e.waitShortTimer())
	c2 := e.srv.accept(e.t)
	c2.nextType(e.t, "init")
	c2.nextType(e.t, "join")
	return c2
}

// Issue 13 item 8 (pigeon.v1): an EmitWithAck whose connection is lost
// before the ack is written again on the next connection with the same
// emitId, and answered by that ack: it does not wait out its ack timeout
// (the fake clock only moves by the reconnect delay).
func TestSocketConn_EmitWithAckResentAfterReconnect(t *testing.T) {
	e := newSockEnv(t, nil)
	swallowFirstEmit(e)
	e.listen("")
	c := e.acceptJoined()
	done := emitAsync(e, &messages.Emit{Event: "note", Data: json.RawMessage(`1`), WantAck: true})
	first := c.nextType(t, "emit").field("emitId")
	c2 := e.reconnectAfterDrop(c)
	again := c2.nextType(t, "emit").field("emitId")
	if len(first) == 0 || string(again) != string(first) {
		t.Fatalf("emitId %s, resent as %s: want the same, non-empty", first, again)
	}
	if err := recvErr(t, done); err != nil {
		t.Fatalf("EmitWithAck = %v, want the resend's ack", err)
	}
}

// A plain Emit returns nil once buffered, is kept until acked, written
// once more after the lost connection, and nothing is left or dropped.
func TestSocketConn_EmitKeptUntilAckedAcrossReconnect(t *testing.T) {
	e := newSockEnv(t, nil)
	swallowFirstEmit(e)
	e.listen("")
	c := e.acceptJoined()
	if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note", Data: json.RawMessage(`2`)})); err != nil {
		t.Fatal(err)
	}
	c.nextType(t, "emit")
	if st := e.state(); st.Unacked != 1 || st.Buffered != 0 {
		t.Fatalf("after the unacked write: Unacked %d, Buffered %d; want 1, 0", st.Unacked, st.Buffered)
	}
	c2 := e.reconnectAfterDrop(c)
	c2.nextType(t, "emit")
	e.waitState("acked", func(s *messages.State) bool { return s.Unacked == 0 && s.Buffered == 0 && s.PendingAcks == 0 })
	if st := e.state(); st.EmitsResent != 1 || st.EmitsDropped != 0 {
		t.Fatalf("EmitsResent %d, EmitsDropped %d; want 1, 0", st.EmitsResent, st.EmitsDropped)
	}
}

// pigeon.v1: a live connection on which an emit gets no ack within the ack
// timeout is dropped and the emit written again after the rejoin.
func TestSocketConn_EmitAckTimeoutReconnectsAndResends(t *testing.T) {
	e := newSockEnv(t, nil)
	swallowFirstEmit(e)
	e.listen("")
	c := e.acceptJoined()
	if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note"})); err != nil {
		t.Fatal(err)
	}
	c.nextType(t, "emit")
	e.clock.Advance(tAckTimeout)
	c.waitClosed(t)
	e.clock.Advance(e.waitShortTimer())
	c2 := e.srv.accept(t)
	c2.nextType(t, "init")
	c2.nextType(t, "join")
	c2.nextType(t, "emit")
	e.waitState("acked", func(s *messages.State) bool { return s.Unacked == 0 && s.PendingAcks == 0 })
}

// Unacked emits count against the emit buffer: with room for two, a third
// Emit while the server acks nothing fails with ErrBufferFull instead of
// a nil that could not be kept.
func TestSocketConn_UnackedEmitsBoundedByBuffer(t *testing.T) {
	e := newSockEnv(t, func(c *SocketConfig) { c.BufferCount = 2 })
	e.srv.setHandle(func(_ *fakeConn, f fakeFrame) bool { return f.Type == "emit" })
	e.listen("")
	e.acceptJoined()
	for i := range 2 {
		if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note"})); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note"})); !errors.Is(err, messages.ErrBufferFull) {
		t.Fatalf("third emit = %v, want ErrBufferFull", err)
	}
}

// Emits that returned nil and that the socket then gives up on are
// counted and reported: refused by the server (an error reply), or still
// unacked when the socket ends (in the final SocketClosed status).
func TestSocketConn_DroppedEmitsCountedAndReported(t *testing.T) {
	feed := NewSocketStatusFeed()
	t.Cleanup(feed.Close)
	e := newSockEnv(t, func(c *SocketConfig) { c.Status = feed })
	e.srv.setHandle(func(c *fakeConn, f fakeFrame) bool {
		if f.Type == "emit" && strings.Contains(string(f.field("data")), "refuse") {
			c.send(map[string]any{"type": "error", "id": f.ID, "payload": map[string]any{"code": "bad_request", "message": "no"}})
		}
		return f.Type == "emit" // the others: never acked
	})
	e.listen("")
	e.acceptJoined()
	if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note", Data: json.RawMessage(`"refuse"`)})); err != nil {
		t.Fatal(err)
	}
	e.waitState("refused emit counted", func(s *messages.State) bool { return s.EmitsDropped == 1 && s.Unacked == 0 })
	for range 2 {
		if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note", Data: json.RawMessage(`"keep"`)})); err != nil {
			t.Fatal(err)
		}
	}
	sub := feed.Subscribe(tctx(t), 16)
	sockAsk[*messages.Disconnected](t, e, &messages.Disconnect{})
	for st := range sub.C {
		if st.State != messages.SocketClosed {
			continue
		}
		if st.EmitsDropped != 3 {
			t.Fatalf("final status %+v: EmitsDropped %d, want 3 (1 refused, 2 unacked)", st, st.EmitsDropped)
		}
		if got := e.state().EmitsDropped; got != 3 {
			t.Fatalf("State.EmitsDropped = %d, want 3", got)
		}
		return
	}
	t.Fatal("no SocketClosed status")
}

// sioFake is a minimal in-process socket.io v4 server on a real websocket:
// the Engine.IO open packet, CONNECT answered with a sid, and every client
// EVENT handed to the test on events, which answers (or not) itself.
type sioFake struct {
	srv    *httptest.Server
	events chan sioFrame
}

type sioFrame struct {
	conn *websocket.Conn
	data string
}

func newSIOFake(t *testing.T) *sioFake {
	f := &sioFake{events: make(chan sioFrame, 64)}
	up := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`0{"sid":"e1","pingInterval":600000,"pingTimeout":600000,"maxPayload":1000000}`))
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			switch s := string(b); {
			case strings.HasPrefix(s, "40"):
				_ = c.WriteMessage(websocket.TextMessage, []byte(`40{"sid":"s1"}`))
			case strings.HasPrefix(s, "42"):
				f.events <- sioFrame{conn: c, data: s}
			}
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *sioFake) next(t *testing.T) sioFrame {
	t.Helper()
	select {
	case fr := <-f.events:
		return fr
	case <-tctx(t).Done():
		t.Fatal("socket.io fake: no event arrived")
		return sioFrame{}
	}
}

// ackID returns the ack id of a `42<id>[...]` frame.
func (fr sioFrame) ackID() string {
	s := strings.TrimPrefix(fr.data, "42")
	return s[:strings.IndexByte(s, '[')]
}

// newSIOEnv is a SocketConn speaking socket.io to a sioFake, with
// EmitRetries and a one-second (fake) ack timeout.
func newSIOEnv(t *testing.T, retries int) (*sockEnv, *sioFake) {
	f := newSIOFake(t)
	e := newSockEnv(t, func(c *SocketConfig) {
		c.URL = f.srv.URL + "/socket.io/"
		c.Codec = wire.SocketIO()
		c.JoinID = ""
		c.Lazy = false
		c.AckTimeout = time.Second
		c.EmitRetries = retries
	})
	e.waitState("connected", func(s *messages.State) bool { return s.State == messages.SocketConnected })
	return e, f
}

// waitTryTimer waits until an emit's one-second try timer is armed.
func (e *sockEnv) waitTryTimer() {
	e.t.Helper()
	if err := e.clock.WaitFor(tctx(e.t), func(p []time.Duration) bool { return slices.Contains(p, time.Second) }); err != nil {
		e.t.Fatalf("no ack timer armed: pending %v", e.clock.Pending())
	}
}

// socket.io with EmitRetries (socket.io-client 4.6 `retries`): a try that
// gets no ack within the ack timeout is written again with the same ack
// id, and the ack of the retry answers the EmitWithAck.
func TestSocketConn_SocketIOEmitRetriesWithSameAckID(t *testing.T) {
	e, f := newSIOEnv(t, 2)
	done := emitAsync(e, &messages.Emit{Event: "note", Data: json.RawMessage(`1`), WantAck: true})
	try1 := f.next(t)
	e.waitTryTimer()
	e.clock.Advance(time.Second)
	try2 := f.next(t)
	if try1.data != try2.data || try1.ackID() == "" {
		t.Fatalf("retry %q of %q: want the same packet and ack id", try2.data, try1.data)
	}
	_ = try2.conn.WriteMessage(websocket.TextMessage, []byte("43"+try2.ackID()+`["ok"]`))
	if err := recvErr(t, done); err != nil {
		t.Fatalf("EmitWithAck = %v, want the retry's ack", err)
	}
}

// socket.io with EmitRetries: a plain Emit the server never acks is tried
// 1+EmitRetries times, then counted as dropped; an EmitWithAck fails with
// ErrAckTimeout.
func TestSocketConn_SocketIORetriesSpentAreReported(t *testing.T) {
	e, f := newSIOEnv(t, 1)
	if err := recvErr(t, emitAsync(e, &messages.Emit{Event: "note"})); err != nil {
		t.Fatal(err)
	}
	acked := emitAsync(e, &messages.Emit{Event: "asked", WantAck: true})
	for range 2 { // the first try and one retry of both emits
		f.next(t)
		f.next(t)
		e.waitTryTimer()
		e.clock.Advance(time.Second)
	}
	if err := recvErr(t, acked); !errors.Is(err, messages.ErrAckTimeout) {
		t.Fatalf("EmitWithAck after its retries = %v, want ErrAckTimeout", err)
	}
	e.waitState("plain emit dropped", func(s *messages.State) bool { return s.EmitsDropped == 1 && s.Unacked == 0 && s.Buffered == 0 })
}

func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-tctx(t).Done():
		t.Fatal("no reply")
		return nil
	}
}
