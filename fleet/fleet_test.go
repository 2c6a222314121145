package fleet_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/fleet"
	"github.com/apppigeon/pigeon/internal/etcdtest"
	"github.com/apppigeon/pigeon/persistence"
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

// A refresh in one process reaches another through the watch alone: the
// other's AuthStore announces the new token (TokensChanged, the path that
// replays waiting requests and updates sockets) before it sent any
// request, and its next request needs no refresh. Both clients are closed
// with their watch and lease-backed session running; TestMain's goleak
// then finds nothing left.
func TestFleet_WatchDeliversRefresh(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 1)
	p1 := e.client(t)
	cli2, err := e.cluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(e.srv.URL), pigeon.WithEtcd(cli2, e.prefix), pigeon.WithEncryptionKey(e.key))
	if err != nil {
		t.Fatal(err)
	}
	sys, store, _ := p2.Actors()
	events, stop, err := etcdtest.TokenEvents(sys, store)
	if err != nil {
		t.Fatal(err)
	}
	if first := <-events; string(first.Snapshot.AccessToken) != e.user.AccessToken {
		t.Fatalf("p2 starts with another token")
	}
	e.clock.Advance(accessTTL)
	if _, err := p1.Get(ctxT(t), "/me"); err != nil {
		t.Fatal(err)
	}
	list, err := p1.AllAuths(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Snapshot.AccessToken != list[0].AccessToken || ev.Ended != 0 {
			t.Fatalf("p2 got %v (ended %v), want p1's new token", ev.Snapshot.AccessToken, ev.Ended)
		}
	case <-time.After(time.Minute):
		t.Fatal("p2 never saw p1's refresh")
	}
	if _, err := p2.Get(ctxT(t), "/me"); err != nil {
		t.Fatal(err)
	}
	if st := e.be.Stats(); st.RefreshCalls != 1 {
		t.Fatalf("server saw %d refreshes, want 1", st.RefreshCalls)
	}
	stop()
	for _, p := range []*pigeon.AuthorizedPigeon{p1, p2} {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cli2.Close(); err != nil {
		t.Fatal(err)
	}
}

// Bad input is a clear error and loses nothing: a nil client, an empty
// prefix or a key of the wrong size fail New (and WithEtcd) before
// anything is read or written; a process with another store key fails its
// load with ErrWrongKey (matching persistence.ErrCorrupt) and the records
// stay as they were.
func TestFleet_BadInput(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 1)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"nil client", func() error { _, err := fleet.New(nil, "/p", e.key); return err }(), nil},
		{"empty prefix", func() error { _, err := fleet.New(e.cli, "/", e.key); return err }(), fleet.ErrInvalidPrefix},
		{"short key", func() error { _, err := fleet.New(e.cli, "/p", []byte("short")); return err }(), persistence.ErrInvalidKey},
		{"WithEtcd nil client", func() error {
			_, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithEtcd(nil, "/p"), pigeon.WithEncryptionKey(e.key))
			return err
		}(), nil},
		{"WithEtcd empty prefix", func() error {
			_, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithEtcd(e.cli, ""), pigeon.WithEncryptionKey(e.key))
			return err
		}(), fleet.ErrInvalidPrefix},
	} {
		if tc.err == nil || (tc.want != nil && !errors.Is(tc.err, tc.want)) {
			t.Errorf("%s: %v, want an error matching %v", tc.name, tc.err, tc.want)
		}
	}
	other, err := fleet.New(e.cli, e.prefix, []byte("another key, also 32 bytes long!"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Load(ctxT(t)); !errors.Is(err, persistence.ErrWrongKey) || !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("load with another key: %v, want ErrWrongKey and ErrCorrupt", err)
	}
	if _, ok := e.stored(t); !ok {
		t.Fatal("the record is gone after a load with the wrong key")
	}
}
