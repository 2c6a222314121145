package actors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/internal/nodepeer"
)

// This file is in package actors_test, in the actors test binary, so the
// npm packages of testdata/sioserver are installed by one package's tests
// only (two packages running `npm ci` in one directory at once would break
// each other in a fresh clone).

// The facade's side of socket.io fidelity (docs/socket.md F1–F3, F8)
// against the npm socket.io server: SocketConnectParams.Namespace,
// SocketArgs, []byte as a binary attachment, Event.Args and a token change
// that reconnects and resumes.
func TestSocketIOFacade_NamespaceArgumentsBinaryAndTokenChange(t *testing.T) {
	base := "http://127.0.0.1:" + nodepeer.Start(t, filepath.Join("testdata", "sioserver"), "socket.io")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	g, err := pigeon.NewGhost(pigeon.WithInMemoryStore(), pigeon.WithBaseURL(base), pigeon.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	g.SetAuthToken("good-token")

	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: base + "/socket.io/chat"}); err == nil || !strings.Contains(err.Error(), `Namespace "/chat"`) {
		t.Fatalf("a namespace in the path: %v", err)
	}
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: base + "/ws", Namespace: "chat"}); err == nil || !strings.Contains(err.Error(), "pigeon.v1") {
		t.Fatalf("a namespace on pigeon.v1: %v", err)
	}

	sub, err := g.Listen(ctx, "") // before SocketInit: sees the welcome
	if err != nil {
		t.Fatal(err)
	}
	next := func(name string) pigeon.Event {
		t.Helper()
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					t.Fatalf("subscription ended: %v", sub.Err())
				}
				if ev.Name == name {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", name)
			}
		}
	}
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: base + "/socket.io/", Namespace: "chat"}); err != nil {
		t.Fatal(err)
	}
	if w := next("welcome"); !strings.Contains(string(w.Data), `"nsp":"/chat"`) {
		t.Fatalf("welcome %s", w.Data)
	}
	ack, err := g.EmitWithAck(ctx, "multi", pigeon.SocketArgs{1, "two"})
	if err != nil || string(ack) != `["two",1]` {
		t.Fatalf("multi ack %s %v", ack, err)
	}
	if err := g.Emit(ctx, "bin", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if ev := next("bin-back"); len(ev.Args) != 2 || !bytes.Equal(ev.Args[0].Binary, []byte{3, 2, 1}) {
		t.Fatalf("bin-back %+v", ev.Args)
	}

	// A token change on a server with connection state recovery.
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: base + "/rec/socket.io/", JoinID: "r"}); err != nil {
		t.Fatal(err)
	}
	states, err := g.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A session resumes from the offset of the last event seen (the
	// server needs one, for socket.io-client too): see one first.
	if sub, err = g.Listen(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if err := g.Emit(ctx, "after", "r"); err != nil {
		t.Fatal(err)
	}
	next("after")
	g.SetAuthToken("good-token-2")
	for st := range states {
		if st.State == pigeon.SocketClosed {
			t.Fatalf("closed: %v", st.Err)
		}
		if st.State == pigeon.SocketConnected && st.Recovered {
			break
		}
	}
	raw, err := g.EmitWithAck(ctx, "whoami", nil)
	var who struct {
		Token     string
		Recovered bool
	}
	if err != nil || json.Unmarshal(raw, &who) != nil || who.Token != "good-token-2" || !who.Recovered {
		t.Fatalf("whoami %s %v", raw, err)
	}
	if err := g.Emit(ctx, "kick", nil); err != nil {
		t.Fatal(err)
	}
	for st := range states {
		if st.State == pigeon.SocketClosed {
			if !errors.Is(st.Err, pigeon.ErrServerDisconnect) {
				t.Fatalf("closed with %v", st.Err)
			}
			break
		}
	}
}

func TestWithSocketIOTokenUpdate_UnknownModeIsAnError(t *testing.T) {
	if _, err := pigeon.NewGhost(pigeon.WithInMemoryStore(), pigeon.WithSocketIOTokenUpdate(7)); err == nil || !strings.Contains(err.Error(), "WithSocketIOTokenUpdate") {
		t.Fatalf("mode 7: %v", err)
	}
}
