package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTour runs the whole tour as `go run ./examples/tour` does and checks
// that it completes and says what it promised.
func TestTour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("tour failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"refresh calls counted by the server: 1",
		"refreshes counted by the server: 50 (one per user)",
		"casper receives \"hi casper, alice here\"",
		"update frames acked +1, websocket connections opened +0",
		"→ /login?continue=%2Fapp%2Fprofile%3Ftab%3Dsecurity",
		"refresh stream says succeeded",
		"socket state stream starts with the current state: connected",
		"then 200: WithRetry retried it",
		"pigeon.http.client.retries 2",
		"LogOut → mode: ghost",
		"every step behaved as described",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tour output lacks %q:\n%s", want, out.String())
		}
	}
}
