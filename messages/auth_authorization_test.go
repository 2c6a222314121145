package messages

import "testing"

func TestTokenSnapshot_AuthorizationMadeOnceAndFollowsTheToken(t *testing.T) {
	s := TokenSnapshot{UID: "u", AccessToken: "T1"}.WithAuthorization()
	a, b := s.Authorization(), s.Authorization()
	if len(a) != 1 || a[0] != "Bearer T1" || &a[0] != &b[0] {
		t.Fatalf("made %v and %v, want one shared [Bearer T1]", a, b)
	}
	c := s
	c.AccessToken = "T2" // a copy with another token must not send T1
	if got := c.Authorization(); len(got) != 1 || got[0] != "Bearer T2" {
		t.Fatalf("copy with T2 sends %v", got)
	}
	var plain TokenSnapshot
	plain.AccessToken = "T3"
	if got := plain.Authorization(); got[0] != "Bearer T3" {
		t.Fatalf("snapshot without WithAuthorization sends %v", got)
	}
}
