package actors

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer is an in-process pigeon.v1 websocket server for SocketConn
// tests (pattern: centrifuge-go's fakeserver_test.go). It is a real
// httptest server speaking real websockets on loopback.
//
// Every accepted connection is a *fakeConn, delivered in order on
// conns. By default a connection answers like the example backend:
//
//	init   → init_ack {session}
//	join   → ack {channel, epoch, seq, recovered:true} (the channel's current position)
//	update, leave, emit → ack (emit acks echo {"echo": data})
//	ping   → pong {t}
//
// Hooks (set them with the setters; safe while connections run):
//   - upgrade(r) int: a non-zero status rejects the websocket handshake
//     with that HTTP status (e.g. 503 to make dials fail, 401 to reject).
//   - handle(c, f) bool: sees every client frame first; returning true
//     means "handled": the default answer is skipped.
//
// Every client frame is also recorded on the connection (fakeConn.next).
// close() closes every connection and the httptest server.
type fakeServer struct {
	t     testing.TB
	srv   *httptest.Server
	url   string
	conns chan *fakeConn

	mu        sync.Mutex
	upgradeFn func(r *http.Request) int
	handleFn  func(c *fakeConn, f fakeFrame) bool
	all       []*fakeConn
	nconn     atomic.Int64
	nupgrade  atomic.Int64
}

// fakeFrame is one decoded client envelope.
type fakeFrame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// afterAck reports whether init_ack had been written on this
	// connection before the frame was read.
	afterAck bool
}

// header returns payload.headers[name] of an init/update frame.
func (f fakeFrame) header(name string) string {
	var p struct {
		Headers map[string]string `json:"headers"`
	}
	_ = json.Unmarshal(f.Payload, &p)
	return p.Headers[name]
}

func (f fakeFrame) field(name string) json.RawMessage {
	var p map[string]json.RawMessage
	_ = json.Unmarshal(f.Payload, &p)
	return p[name]
}

// fakeConn is one server-side connection.
type fakeConn struct {
	s       *fakeServer
	ws      *websocket.Conn
	req     *http.Request
	wmu     sync.Mutex
	frames  chan fakeFrame
	done    chan struct{} // closed when the server's reader ends
	readErr error         // valid after done
	ackSent atomic.Bool
	// positions per channel for default join acks, guarded by wmu.
	pos map[string]uint64
}

func newFakeServer(t testing.TB) *fakeServer {
	s := &fakeServer{t: t, conns: make(chan *fakeConn, 256)}
	up := websocket.Upgrader{Subprotocols: []string{"pigeon.v1"}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.nupgrade.Add(1)
		s.mu.Lock()
		fn := s.upgradeFn
		s.mu.Unlock()
		if fn != nil {
			if code := fn(r); code != 0 {
				http.Error(w, "rejected by test", code)
				return
			}
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		fc := &fakeConn{s: s, ws: c, req: r, frames: make(chan fakeFrame, 4096), done: make(chan struct{}), pos: map[string]uint64{}}
		s.mu.Lock()
		s.all = append(s.all, fc)
		s.mu.Unlock()
		s.nconn.Add(1)
		s.conns <- fc
		fc.serve()
	}))
	s.url = "ws" + strings.TrimPrefix(s.srv.URL, "http")
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) setUpgrade(fn func(r *http.Request) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upgradeFn = fn
}

func (s *fakeServer) setHandle(fn func(c *fakeConn, f fakeFrame) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handleFn = fn
}

func (s *fakeServer) close() {
	s.mu.Lock()
	all := append([]*fakeConn(nil), s.all...)
	s.mu.Unlock()
	for _, c := range all {
		_ = c.ws.Close()
	}
	s.srv.Close()
}

// accept waits for the next connection.
func (s *fakeServer) accept(t testing.TB) *fakeConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case c := <-s.conns:
		return c
	case <-ctx.Done():
		t.Fatalf("fakeServer: no connection arrived")
		return nil
	}
}

func (c *fakeConn) serve() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readErr = err
			return
		}
		var f fakeFrame
		if err := json.Unmarshal(data, &f); err != nil {
			c.s.t.Errorf("fakeServer: client sent a non-JSON frame %q", data)
			continue
		}
		f.afterAck = c.ackSent.Load()
		c.frames <- f
		c.s.mu.Lock()
		h := c.s.handleFn
		c.s.mu.Unlock()
		if h != nil && h(c, f) {
			continue
		}
		c.answer(f)
	}
}

// answer sends the default reply to f.
func (c *fakeConn) answer(f fakeFrame) {
	switch f.Type {
	case "init":
		c.send(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s1", "pingIntervalMs": 0}})
	case "join":
		var p struct {
			Channel string `json:"channel"`
		}
		_ = json.Unmarshal(f.Payload, &p)
		c.wmu.Lock()
		seq := c.pos[p.Channel]
		c.wmu.Unlock()
		c.send(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{"channel": p.Channel, "epoch": "e1", "seq": seq, "recovered": true}})
	case "update", "leave":
		c.send(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{}})
	case "emit":
		if f.ID != "" {
			c.send(map[string]any{"type": "ack", "id": f.ID, "payload": map[string]any{"echo": f.field("data")}})
		}
	case "ping":
		c.send(map[string]any{"type": "pong", "payload": json.RawMessage(f.Payload)})
	}
}

// send writes v as a JSON text frame. A write error (client gone) is
// ignored: tests observe the client side.
func (c *fakeConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.s.t.Errorf("fakeServer: marshal: %v", err)
		return
	}
	c.sendRaw(websocket.TextMessage, b)
}

func (c *fakeConn) sendRaw(typ int, b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if strings.Contains(string(b), `"init_ack"`) {
		c.ackSent.Store(true)
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.ws.WriteMessage(typ, b)
}

// event pushes an event on channel with seq.
func (c *fakeConn) event(channel, name string, seq uint64, data string) {
	c.wmu.Lock()
	if seq > c.pos[channel] {
		c.pos[channel] = seq
	}
	c.wmu.Unlock()
	c.send(map[string]any{"type": "event", "payload": map[string]any{"channel": channel, "event": name, "epoch": "e1", "seq": seq, "data": json.RawMessage(data)}})
}

// closeWith sends a close frame with code and closes the TCP connection.
func (c *fakeConn) closeWith(code int, text string) {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(5*time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
}

// drop closes the TCP connection without a close frame (client sees 1006).
func (c *fakeConn) drop() { _ = c.ws.Close() }

// next returns the next client frame, skipping pings.
func (c *fakeConn) next(t testing.TB) fakeFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		select {
		case f := <-c.frames:
			if f.Type == "ping" {
				continue
			}
			return f
		case <-ctx.Done():
			t.Fatalf("fakeServer: no frame arrived")
			return fakeFrame{}
		}
	}
}

// nextType returns the next client frame, which must have type typ.
func (c *fakeConn) nextType(t testing.TB, typ string) fakeFrame {
	t.Helper()
	f := c.next(t)
	if f.Type != typ {
		t.Fatalf("fakeServer: got frame %q (%s), want %q", f.Type, f.Payload, typ)
	}
	return f
}

// waitClosed waits for the client to close and returns the server's read
// error (a *websocket.CloseError when the client sent a close frame).
func (c *fakeConn) waitClosed(t testing.TB) error {
	t.Helper()
	select {
	case <-c.done:
		return c.readErr
	case <-time.After(10 * time.Second):
		t.Fatalf("fakeServer: connection not closed")
		return nil
	}
}

// wsCloseError aliases gorilla's close error for assertions.
type wsCloseError = websocket.CloseError
