package actors

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	ci := os.Getenv("CI") == "true"
	node, err := exec.LookPath("node")
	if err != nil {
		if ci {
			t.Fatalf("node not found (required in CI): %v", err)
		}
		t.Skipf("skipping socket.io interop: node not installed (%v)", err)
	}
	dir := filepath.Join("testdata", "sioserver")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io")); err != nil {
		if !ci {
			t.Skipf("skipping socket.io interop: run `npm ci` in actors/%s first (CI=true does it automatically)", dir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	lines := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-readerDone
		_ = cmd.Wait()
	})
	select {
	case l := <-lines:
		port, ok := strings.CutPrefix(l, "PORT ")
		if !ok {
			t.Fatalf("server.js printed %q", l)
		}
		return "http://127.0.0.1:" + port + "/socket.io/"
	case <-time.After(30 * time.Second):
		t.Fatal("server.js did not print its port")
		return ""
	}
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

	t.Run("connect join emit ack receive kick reconnect", func(t *testing.T) {
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
		if _, err := Ask(ctx, sys, pid, &messages.Emit{Event: "kick"}); err != nil {
			t.Fatal(err)
		}
		st2 := waitConnected(pid, st.Generation)
		if st2.Session == st.Session {
			t.Fatal("same session after a server-initiated disconnect")
		}
		roundTrip(pid, l, 2) // re-joined room:1 after reconnecting
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
