package actors

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/apppigeon/pigeon/messages"
)

// lineSink is a zap WriteSyncer that hands every written log line to a
// channel, so a test can wait for the line it expects.
type lineSink chan string

func (s lineSink) Write(p []byte) (int, error) {
	select {
	case s <- string(p):
	default: // the test reads what it needs; never block the logger
	}
	return len(p), nil
}

func (lineSink) Sync() error { return nil }

// A header update that reaches a stopped socket is a dead letter, which
// protoactor logs with the message in it: the logged line names the
// message and its header names but never a header value.
func TestSocketConn_HeaderUpdateDeadLetterLogsNoToken(t *testing.T) {
	const token = "tok-deadletter-5e4d3c2b1a"
	sink := make(lineSink, 64)
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), sink, zap.DebugLevel))
	sys := NewSystem(logger, WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	pid := sys.Root.Spawn(NewSocketConnProps(SocketConfig{URL: "ws://127.0.0.1:1/ws", Lazy: true}))
	if err := StopAndWait(context.Background(), sys, pid); err != nil {
		t.Fatal(err)
	}

	sys.Root.Send(pid, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer " + token}}})

	ctx := tctx(t)
	for {
		select {
		case line := <-sink:
			if strings.Contains(line, token) {
				t.Fatalf("the dead letter log printed the token: %s", line)
			}
			if strings.Contains(line, "DeadLetter") && strings.Contains(line, "Authorization") {
				return // the dead letter, logged, redacted
			}
		case <-ctx.Done():
			t.Fatal("no dead-letter line naming the header update was logged")
		}
	}
}
