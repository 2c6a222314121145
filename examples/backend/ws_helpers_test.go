package backend

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// safety bounds every read so that a broken server fails the test instead of
// hanging it; it never synchronises anything.
const safety = 20 * time.Second

// wsClient is a real gorilla websocket client speaking pigeon.v1.
type wsClient struct {
	t testing.TB
	c *websocket.Conn
}

type frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

func (f frame) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(f.Payload, v); err != nil {
		t.Fatalf("decode %s payload %s: %v", f.Type, f.Payload, err)
	}
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" }

func dial(t testing.TB, srv *httptest.Server) *wsClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{Subprotocol}, HandshakeTimeout: safety}
	c, res, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if res.Body != nil {
		res.Body.Close()
	}
	if got := c.Subprotocol(); got != Subprotocol {
		t.Fatalf("sub-protocol = %q", got)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(typ, id string, payload any) {
	w.t.Helper()
	if err := w.c.WriteJSON(map[string]any{"type": typ, "id": id, "payload": payload}); err != nil {
		w.t.Fatalf("send %s: %v", typ, err)
	}
}

func (w *wsClient) sendRaw(s string) {
	w.t.Helper()
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		w.t.Fatalf("send raw: %v", err)
	}
}

// read returns the next frame.
func (w *wsClient) read() frame {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(safety))
	var f frame
	_, data, err := w.c.ReadMessage()
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		w.t.Fatalf("frame %q: %v", data, err)
	}
	return f
}

// expect reads the next frame and checks its type and id.
func (w *wsClient) expect(typ, id string) frame {
	w.t.Helper()
	f := w.read()
	if f.Type != typ || f.ID != id {
		w.t.Fatalf("got frame %s id %q payload %s, want %s id %q", f.Type, f.ID, f.Payload, typ, id)
	}
	return f
}

// expectClose reads until the connection ends and checks the close code.
func (w *wsClient) expectClose(code int) {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(safety))
	for {
		_, data, err := w.c.ReadMessage()
		if err == nil {
			w.t.Logf("frame before close: %s", data)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			w.t.Fatalf("connection ended with %v, want close %d", err, code)
		}
		if ce.Code != code {
			w.t.Fatalf("close %d %q, want %d", ce.Code, ce.Text, code)
		}
		// Wait for the server to drop the TCP connection: it does so only
		// after its reader ended, so its counters are final.
		_ = w.c.NetConn().SetReadDeadline(time.Now().Add(safety))
		_, _ = io.Copy(io.Discard, w.c.NetConn())
		return
	}
}

func authHeaders(token string) map[string]any {
	return map[string]any{"headers": map[string]string{"Authorization": "Bearer " + token}}
}

// init sends init with token and waits for init_ack.
func (w *wsClient) init(token string) initAckPayload {
	w.t.Helper()
	w.send(TypeInit, "init", authHeaders(token))
	var ack initAckPayload
	w.expect(TypeInitAck, "init").decode(w.t, &ack)
	return ack
}

// join joins channel (with since when non-nil) and returns the ack.
func (w *wsClient) join(id, channel string, since *Position) joinAckPayload {
	w.t.Helper()
	p := map[string]any{"channel": channel}
	if since != nil {
		p["since"] = since
	}
	w.send(TypeJoin, id, p)
	var ack joinAckPayload
	w.expect(TypeAck, id).decode(w.t, &ack)
	return ack
}

// event reads the next frame, which must be an event.
func (w *wsClient) event() eventPayload {
	w.t.Helper()
	var ev eventPayload
	w.expect(TypeEvent, "").decode(w.t, &ev)
	return ev
}

// barrier sends a ping and reads up to its pong: every frame the server
// queued before handling the ping is returned, in order.
func (w *wsClient) barrier(tag string) []frame {
	w.t.Helper()
	w.send(TypePing, "", map[string]string{"t": tag})
	var before []frame
	for {
		f := w.read()
		if f.Type == TypePong {
			var p struct {
				T string `json:"t"`
			}
			if json.Unmarshal(f.Payload, &p) == nil && p.T == tag {
				return before
			}
			continue // a heartbeat
		}
		before = append(before, f)
	}
}

func dialStatus(t testing.TB, srv *httptest.Server, protocols []string) int {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: safety}
	c, res, err := d.Dial(wsURL(srv), nil)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols
	}
	if res == nil {
		t.Fatalf("dial: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func errSeq(got, want uint64) error {
	return errors.New("event seq " + itoa(got) + ", want " + itoa(want))
}
