package ws_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// The write queue is a slice the writer takes whole: it still holds at
// most QueueSize frames (ErrQueueFull beyond, nothing queued), a graceful
// close behind a full queue closes at once, and nothing is taken after a
// graceful close.
func TestPumpQueue_BoundOrderAndClose(t *testing.T) {
	release := make(chan struct{})
	got := make(chan string, 64)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		<-release // read nothing until told: the client's writes back up
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if len(b) < 16 {
				got <- string(b)
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	conn, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), ws.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p := ws.NewPump(conn, ws.PumpConfig{OnFrame: func(wire.Frame) {}, QueueSize: 4})
	defer p.Close()
	// Large frames until the socket buffers are full and the writer is
	// stuck in a write; then the queue fills.
	big := make([]byte, 1<<20)
	full := false
	for i := 0; i < 256 && !full; i++ {
		err := p.Send(wire.Frame{Type: wire.BinaryMessage, Data: big})
		switch {
		case errors.Is(err, ws.ErrQueueFull):
			full = true
		case err != nil:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("256 MiB queued without ErrQueueFull")
	}
	// A graceful close behind a full queue closes at once.
	p.CloseGraceful(websocket.CloseNormalClosure, "bye")
	<-p.Done()
	if err := p.Send(wire.Frame{Type: wire.TextMessage, Data: []byte("late")}); !errors.Is(err, ws.ErrPumpClosed) {
		t.Fatalf("send after close: %v", err)
	}

	// On an idle pump the close frame is queued, and nothing after it.
	conn2, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), ws.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p2 := ws.NewPump(conn2, ws.PumpConfig{OnFrame: func(wire.Frame) {}, QueueSize: 4})
	defer p2.Close()
	if err := p2.Send(wire.Frame{Type: wire.TextMessage, Data: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	p2.CloseGraceful(websocket.CloseNormalClosure, "bye")
	if err := p2.Send(wire.Frame{Type: wire.TextMessage, Data: []byte("late")}); !errors.Is(err, ws.ErrPumpClosed) {
		t.Fatalf("send after CloseGraceful: %v", err)
	}
	close(release)
	if s := <-got; s != "first" {
		t.Fatalf("frame before the close: %q", s)
	}
	<-p.Done()
}
