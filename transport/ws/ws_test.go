package ws_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

func TestBackoffFullJitter(t *testing.T) {
	b := ws.NewBackoff(0, 0, rand.New(rand.NewPCG(1, 1)))
	for _, tc := range []struct {
		n   int
		cap time.Duration
	}{{0, 200 * time.Millisecond}, {1, 400 * time.Millisecond}, {3, 1600 * time.Millisecond}, {6, 12800 * time.Millisecond}, {7, 20 * time.Second}, {100, 20 * time.Second}} {
		if got := b.Cap(tc.n); got != tc.cap {
			t.Errorf("Cap(%d) = %v, want %v", tc.n, got, tc.cap)
		}
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := b.Delay(tc.n)
			if d < 0 || d > tc.cap {
				t.Fatalf("Delay(%d) = %v outside [0,%v]", tc.n, d, tc.cap)
			}
			seen[d] = true
		}
		if len(seen) < 150 {
			t.Errorf("Delay(%d): only %d distinct values in 200", tc.n, len(seen))
		}
	}
	x := ws.NewBackoff(time.Second, time.Second, rand.New(rand.NewPCG(9, 9)))
	y := ws.NewBackoff(time.Second, time.Second, rand.New(rand.NewPCG(9, 9)))
	for i := 0; i < 10; i++ {
		if x.Delay(i) != y.Delay(i) {
			t.Fatal("same seed, different delays")
		}
	}
}

func echoServer(t *testing.T) string {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") != "yes" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestDialAndPump(t *testing.T) {
	url := echoServer(t)
	ctx := context.Background()
	if _, err := ws.Dial(ctx, url, ws.DialConfig{}); !errors.As(err, new(*ws.HandshakeError)) {
		t.Fatalf("dial without header: %v", err)
	}
	conn, err := ws.Dial(ctx, url, ws.DialConfig{Header: http.Header{"X-Test": {"yes"}}, ReadLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan wire.Frame, 16)
	readErr := make(chan error, 1)
	p := ws.NewPump(conn, ws.PumpConfig{OnFrame: func(f wire.Frame) { frames <- f }, OnReadError: func(err error) { readErr <- err }})
	for _, s := range []string{"a", "b", "c"} {
		if err := p.Send(wire.Frame{Type: wire.TextMessage, Data: []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b", "c"} {
		if f := <-frames; string(f.Data) != want {
			t.Fatalf("echo %q, want %q", f.Data, want)
		}
	}
	// An oversized echo fails the read: the reader reports once and exits.
	if err := p.Send(wire.Frame{Type: wire.TextMessage, Data: make([]byte, 100)}); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("read error %v", err)
	}
	<-p.Done()
	if err := p.Send(wire.Frame{Type: wire.TextMessage}); !errors.Is(err, ws.ErrPumpClosed) {
		t.Fatalf("send after close: %v", err)
	}
	p.Close()
	p.Close()
}

func TestPumpCloseGraceful(t *testing.T) {
	url := echoServer(t)
	conn, err := ws.Dial(context.Background(), url, ws.DialConfig{Header: http.Header{"X-Test": {"yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	p := ws.NewPump(conn, ws.PumpConfig{OnFrame: func(wire.Frame) {}, OnReadError: func(err error) { readErr <- err }})
	p.CloseGraceful(websocket.CloseNormalClosure, "bye")
	<-p.Done()
	p.Close()
	if err := <-readErr; err == nil {
		t.Fatal("no read error after close")
	}
}
