package backend

import (
	"net/http"
	"testing"
	"time"
)

// With a reuse interval, a rotated refresh token answers with new tokens
// again until the interval ends (by the injected clock), then
// invalid_grant; without one it is rejected at once (TestRefreshRotates).
func TestRefreshReuseInterval(t *testing.T) {
	clock := newFakeClock()
	b, srv := newServer(t, WithClock(clock.Now), WithRefreshReuseInterval(time.Minute))
	tok := signup(t, srv, "reuse@x")
	for i, want := range []int{http.StatusOK, http.StatusOK} {
		r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
		if r.status != want {
			t.Fatalf("use %d: %d %s", i+1, r.status, r.body)
		}
		var got refreshAnswer
		r.data(t, &got)
		if got.RefreshToken == tok.RefreshToken || got.AccessToken == "" {
			t.Fatalf("use %d: answer %+v does not rotate", i+1, got)
		}
	}
	clock.Advance(time.Minute)
	r := call(t, srv, "POST", "/auth/refresh", "", map[string]string{"refreshToken": tok.RefreshToken})
	if r.status != http.StatusUnauthorized || r.errCode(t) != "invalid_grant" {
		t.Fatalf("after the interval: %d %s", r.status, r.body)
	}
	if st := b.Stats(); st.RefreshSucceeded != 2 || st.RefreshRejected != 1 {
		t.Fatalf("stats: ok %d rejected %d", st.RefreshSucceeded, st.RefreshRejected)
	}
}
