package pigeon_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
)

// The store's errors reach the caller of NewAuthorized as pigeon's own
// sentinels: a directory another client holds is ErrLocked, a store
// written with another key is ErrWrongKey — and neither loses the stored
// account.
func TestStoreErrors_AreRootSentinels(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{1}, 32)
	open := func(k []byte) (*pigeon.AuthorizedPigeon, error) {
		return pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
			pigeon.WithBaseURL("https://api.example.com"), pigeon.WithStoreDir(dir),
			pigeon.WithEncryptionKey(k), pigeon.WithLogger(zaptest.NewLogger(t)))
	}
	p, err := open(key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u1", AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	if second, err := open(key); !errors.Is(err, pigeon.ErrLocked) {
		if second != nil {
			_ = second.Close()
		}
		t.Fatalf("second open of a held directory = %v, want ErrLocked", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if other, err := open(bytes.Repeat([]byte{2}, 32)); !errors.Is(err, pigeon.ErrWrongKey) {
		if other != nil {
			_ = other.Close()
		}
		t.Fatalf("open with another key = %v, want ErrWrongKey", err)
	}
	p, err = open(key)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if cur, err := p.CurrentAuth(ctx); err != nil || cur.UID != "u1" {
		t.Fatalf("after the refused opens: %+v, %v", cur, err)
	}
}

// An emit the server never acknowledges fails with the root ErrAckTimeout.
func TestEmitWithAck_TimeoutIsRootSentinel(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{"pigeon.v1"}}
	emits := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var f struct{ Type, ID string }
			if json.Unmarshal(data, &f) != nil {
				return
			}
			switch f.Type {
			case "init", "join":
				_ = c.WriteJSON(map[string]any{"type": f.Type + "_ack", "id": f.ID, "payload": map[string]any{}})
			case "ping":
			default: // never acknowledged
				select {
				case emits <- f.Type:
				default:
				}
			}
		}
	}))
	defer srv.Close()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL), pigeon.WithAckTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := ctxT(t)
	if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.EmitWithAck(ctx, "message", "hello"); !errors.Is(err, pigeon.ErrAckTimeout) {
		t.Fatalf("EmitWithAck = %v, want ErrAckTimeout", err)
	}
	if got := recv(t, ctx, emits); got == "" {
		t.Fatal("the server saw no emit")
	}
}
