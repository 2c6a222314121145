package fleet_test

import (
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// 3-member cluster, 5 processes, one account, 2,000 concurrent requests
// per round across them through several expiries: the server counts
// exactly one refresh per expiry, no request fails, no refresh token is
// used twice (the example backend rejects a reused one, which would count
// as a rejected refresh and fail requests).
func TestFleet_OneRefreshPerExpiry(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 3)
	var cs []*child
	for i := range 5 {
		cs = append(cs, e.start(t, "p"+string(rune('0'+i))))
	}
	const expiries = 3
	burst(t, 400, cs...) // the login's token, no refresh
	for range expiries {
		e.clock.Advance(accessTTL)
		burst(t, 400, cs...)
	}
	st := e.be.Stats()
	if st.RefreshSucceeded != expiries || st.RefreshRejected != 0 {
		t.Errorf("server counted %d refreshes (%d rejected), want %d (0)", st.RefreshSucceeded, st.RefreshRejected, expiries)
	}
	t.Logf("figures: %d expiries, %d requests, %d refreshes counted by the server, %d rejected", expiries, (expiries+1)*2000, st.RefreshSucceeded, st.RefreshRejected)
	for _, c := range cs {
		c.quit()
	}
}

// etcd holds no plaintext token: every raw value under the prefix is read
// and none contains the access or refresh token, before or after a
// refresh.
func TestFleet_SealedRecords(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 1)
	check := func(secrets ...string) {
		t.Helper()
		resp, err := e.cli.Get(ctxT(t), e.prefix+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		recs := 0
		for _, kv := range resp.Kvs {
			if strings.HasSuffix(string(kv.Key), "/rec") {
				recs++
			}
			for _, s := range secrets {
				if strings.Contains(string(kv.Value), s) || strings.Contains(string(kv.Key), s) {
					t.Errorf("key %q holds a plaintext token", kv.Key)
				}
			}
		}
		if recs != 1 {
			t.Fatalf("%d records under the prefix, want 1", recs)
		}
	}
	check(e.user.AccessToken, e.user.RefreshToken)
	p := e.client(t)
	defer p.Close()
	e.clock.Advance(accessTTL)
	if _, err := p.Get(ctxT(t), "/me"); err != nil {
		t.Fatal(err)
	}
	list, err := p.AllAuths(ctxT(t))
	if err != nil || len(list) != 1 {
		t.Fatalf("AllAuths: %v %v", list, err)
	}
	if string(list[0].AccessToken) == e.user.AccessToken {
		t.Fatal("no refresh happened")
	}
	check(e.user.AccessToken, e.user.RefreshToken, string(list[0].AccessToken), string(list[0].RefreshToken))
}
