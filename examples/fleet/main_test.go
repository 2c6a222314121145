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

// TestFleet runs the example as `go run ./examples/fleet` does: one
// refresh per expiry across three replicas, also when the lock holder dies
// mid-refresh.
func TestFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out := new(bytes.Buffer)
	if err := run(ctx, out, 3); err != nil {
		t.Fatalf("fleet example failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"expiry 1: 150 requests, refreshes counted by the server: 1\n",
		"expiry 3: 150 requests, refreshes counted by the server: 3\n",
		"refreshes counted by the server: 4 (one per expiry)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
