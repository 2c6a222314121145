package actors

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/internal/nodepeer"
	"github.com/apppigeon/pigeon/messages"
)

// Issue 13 item 8 (socket.io): against the reference socket.io server from
// npm, whose "flaky" handler never acks the first copy of an emit, an
// EmitWithAck with EmitRetries is written again after its try's ack
// timeout and answered by the server's ack of the second copy: at least
// once, as socket.io-client 4.6's `retries`. Without retries it fails with
// ErrAckTimeout.
func TestSocketIOInterop_EmitRetries(t *testing.T) {
	url := "http://127.0.0.1:" + nodepeer.Start(t, filepath.Join("testdata", "sioretry"), "socket.io") + "/socket.io/"
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	// emitVia spawns a socket with retries and sends it m.
	emitVia := func(retries int, m *messages.Emit) (*messages.EmitResult, error) {
		pid := sys.Root.Spawn(NewSocketConnProps(SocketConfig{
			URL:         url,
			AckTimeout:  200 * time.Millisecond,
			EmitRetries: retries,
			Rand:        rand.New(rand.NewPCG(7, 7)),
			Logger:      zaptest.NewLogger(t),
		}))
		t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, pid) })
		return AskAs[*messages.EmitResult](tctx(t), sys, pid, m)
	}

	r, err := emitVia(2, &messages.Emit{Event: "flaky", Data: json.RawMessage(`{"n":1}`), WantAck: true})
	if err != nil {
		t.Fatalf("EmitWithAck with retries = %v, want the ack of the second copy", err)
	}
	var ack struct{ N, Copies int }
	if err := json.Unmarshal(r.Ack, &ack); err != nil || ack.N != 1 || ack.Copies < 2 {
		t.Fatalf("ack %s: want n 1 and at least 2 copies received", r.Ack)
	}

	if _, err := emitVia(0, &messages.Emit{Event: "flaky", Data: json.RawMessage(`{"n":2}`), WantAck: true}); !errors.Is(err, messages.ErrAckTimeout) {
		t.Fatalf("EmitWithAck without retries = %v, want ErrAckTimeout", err)
	}
}
