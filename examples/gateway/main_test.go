package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestGateway runs the example as `go run ./examples/gateway` does: every
// user is answered as itself through one client, and after every access
// token expired the server counted one refresh per user.
func TestGateway(t *testing.T) {
	var out bytes.Buffer
	if err := run(ctxT(t), &out, 20); err != nil {
		t.Fatalf("gateway example failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`current account after 20 SaveAuth calls: ""`,
		"refreshes counted by the server: 20 (one per user)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// A user the client does not hold is a 404 from the gateway, and no
// request reaches the backend without a token; a caller's own
// Authorization header is not forwarded.
func TestGateway_UnknownUserAndForeignAuthorization(t *testing.T) {
	ctx := ctxT(t)
	d, err := startDemo(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	before := d.be.Stats()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.gateway+"/users/nobody/me", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown user: %d, want 404", resp.StatusCode)
	}
	if after := d.be.Stats(); after.Requests["/me"] != before.Requests["/me"] {
		t.Fatalf("a request for an unknown user reached the backend")
	}
	// user 0's request carrying user 1's token is still sent as user 0.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, d.gateway+"/users/"+d.users[0].UID+"/me", nil)
	req.Header.Set("Authorization", "Bearer "+d.users[1].AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(body.String(), d.users[0].UID) {
		t.Fatalf("user 0 with a foreign Authorization: %d %s", resp.StatusCode, body.String())
	}
}
