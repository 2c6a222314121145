package pigeon_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/apppigeon/pigeon"
)

// A configuration error (here invalid_client) through an AuthorizedPigeon:
// the caller's error carries the *OAuth2Error with code and description and
// matches ErrRefreshMisconfigured and ErrRefreshUnavailable, not
// ErrSessionExpired; the account and its tokens stay; while the back-off
// lasts new 401s fail without asking the endpoint; after it one new attempt
// is made; each attempt is logged with the code and description.
func TestOAuth2_ConfigErrorKeepsSessionAndBacksOff(t *testing.T) {
	var calls atomic.Int32
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"client secret expired"}`)
	}))
	defer token.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	core, logs := observer.New(zapcore.WarnLevel)
	clock := newFakeClock()
	p, err := pigeon.NewAuthorized(pigeon.OAuth2Refresher{TokenURL: token.URL + "/token", ClientID: "app", ClientSecret: "old", AuthStyle: pigeon.AuthStyleInHeader},
		pigeon.WithBaseURL(api.URL), pigeon.WithInMemoryStore(), pigeon.WithClock(clock), pigeon.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u", AccessToken: "at", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Get(ctx, "/x")
	var oe *pigeon.OAuth2Error
	if !errors.As(err, &oe) || oe.Code != "invalid_client" || oe.Description != "client secret expired" || oe.StatusCode != http.StatusUnauthorized {
		t.Fatalf("error %v: no invalid_client *OAuth2Error in it (%+v)", err, oe)
	}
	if !errors.Is(err, pigeon.ErrRefreshMisconfigured) || !errors.Is(err, pigeon.ErrRefreshUnavailable) || errors.Is(err, pigeon.ErrSessionExpired) {
		t.Fatalf("error %v: want ErrRefreshMisconfigured and ErrRefreshUnavailable, not ErrSessionExpired", err)
	}
	if !strings.Contains(err.Error(), "invalid_client: client secret expired") {
		t.Fatalf("error %q does not say the code and description", err)
	}
	cur, err := p.CurrentAuth(ctx)
	if err != nil || cur.RefreshToken != "rt" {
		t.Fatalf("session after a configuration error: %+v, %v", cur, err)
	}
	// Inside the back-off: no new call.
	for range 5 {
		if _, err := p.Get(ctx, "/x"); !errors.Is(err, pigeon.ErrRefreshUnavailable) {
			t.Fatalf("during the back-off: %v", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("token endpoint called %d times during the back-off, want 1", n)
	}
	clock.Advance(time.Minute) // past any back-off step
	if _, err := p.Get(ctx, "/x"); !errors.Is(err, pigeon.ErrRefreshMisconfigured) {
		t.Fatalf("after the back-off: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("token endpoint called %d times after the back-off, want 2", n)
	}
	var logged int
	for _, e := range logs.All() {
		if s, _ := e.ContextMap()["error"].(string); strings.Contains(s, "invalid_client: client secret expired") {
			logged++
		}
	}
	if logged != 2 {
		t.Fatalf("%d log entries with the code and description, want one per attempt (2): %v", logged, logs.All())
	}
}
