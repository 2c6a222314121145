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
)

// startSIOServer runs testdata/sioserver/server.js (the reference socket.io
// 4.x server from npm) under node on loopback and returns its base URL. The
// process is killed and waited for in t.Cleanup. Without node or
// node_modules the test is skipped, unless CI=true: then a missing node
// fails and missing node_modules are installed with `npm ci`.
func startSIOServer(t *testing.T) string {
	t.Helper()
	return sioRef(t) + "/socket.io/"
}

func TestSocketIOInterop(t *testing.T) {
	url := startSIOServer(t)
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	spawn := func(token string) *actor.PID {
		pid := sys.Root.Spawn(NewSocketConnProps(SocketConfig{
			URL:            url,
			Lazy:           true,
			InitialHeaders: http.Header{"Authorization": {"Bearer " + token}},
			JoinID:         "room:1",
			AckTimeout:     10 * time.Second,
			BackoffBase:    20 * time.Millisecond,
			BackoffMax:     100 * time.Millisecond,
			Rand:           rand.New(rand.NewPCG(7, 7)),
			Logger:         zaptest.NewLogger(t),
		}))
		t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, pid) })
		return pid
	}
	ctx := tctx(t)
	waitConnected := func(pid *actor.PID, after uint64) *messages.State {
		for {
			st, err := AskAs[*messages.State](ctx, sys, pid, &messages.GetState{})
			if err != nil {
				t.Fatalf("waiting for connection: %v", err)
			}
			if st.State == messages.SocketConnected && st.Generation > after {
				return st
			}
		}
	}
	roundTrip := func(pid *actor.PID, l *SocketListener, n int) {
		t.Helper()
		data, _ := json.Marshal(map[string]int{"n": n})
		r, err := AskAs[*messages.EmitResult](ctx, sys, pid, &messages.Emit{Event: "message", Data: data, WantAck: true})
		if err != nil {
			t.Fatalf("emit: %v", err)
		}
		if want := `{"echo":` + string(data) + `}`; string(r.Ack) != want {
			t.Fatalf("ack %s, want %s", r.Ack, want)
		}
		ev := recvEvent(t, l)
		if ev.Name != "message" || string(ev.Data) != string(data) {
			t.Fatalf("event %+v", ev)
		}
	}

	t.Run("connect join emit ack receive, kick ends the socket", func(t *testing.T) {
		pid := spawn("good-token")
		l, err := AskAs[*SocketListener](ctx, sys, pid, &messages.Listen{Event: "message"})
		if err != nil {
			t.Fatal(err)
		}
		st := waitConnected(pid, 0)
		if st.Session == "" {
			t.Fatal("no socket.io sid")
		}
		roundTrip(pid, l, 1)
		roundTrip(pid, l, 2)
		if _, err := Ask(ctx, sys, pid, &messages.Emit{Event: "kick"}); err != nil {
			t.Fatal(err)
		}
		// The server's socket.disconnect() is final, as with
		// socket.io-client (TestSocketIOFidelity_ServerDisconnectIsTerminal).
		if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrServerDisconnect) {
			t.Fatalf("listener err %v", err)
		}
	})
	t.Run("bad token rejected twice is terminal", func(t *testing.T) {
		pid := spawn("bad-token")
		l, err := AskAs[*SocketListener](ctx, sys, pid, &messages.Listen{})
		if err != nil {
			t.Fatal(err)
		}
		var se *messages.SocketServerError
		if err := waitClosedListener(t, l); !errors.As(err, new(*messages.SocketRejectedError)) || !errors.As(err, &se) || se.Message != "unauthorized" {
			t.Fatalf("listener err %v", err)
		}
	})
}
