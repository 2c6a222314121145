package fleet_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/fleet"
	"github.com/apppigeon/pigeon/internal/etcdtest"
)

func (e *fleetEnv) children(t *testing.T, n int) []*child {
	var cs []*child
	for i := range n {
		cs = append(cs, e.start(t, fmt.Sprintf("p%d", i)))
	}
	return cs
}

// stored returns the account's record in etcd as a fresh process loads it
// (decrypted with the key), and whether there is one.
func (e *fleetEnv) stored(t *testing.T) (refreshToken string, ok bool) {
	t.Helper()
	s, err := fleet.New(e.cli, e.prefix, e.key)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Records {
		if r.UID == e.user.UID {
			return string(r.RefreshToken), true
		}
	}
	return "", false
}

// holderAfterRotation starts a holder and three other processes, lets the
// access token expire and returns once the holder's refresh was answered
// by the server (the token rotated) and before the holder writes it.
func (e *fleetEnv) holderAfterRotation(t *testing.T) (holder *child, others []*child) {
	holder = e.start(t, "holder", childHold+"=after")
	others = e.children(t, 3)
	e.clock.Advance(accessTTL)
	holder.send("burst 20")
	holder.event("refreshing")
	holder.event("refreshed")
	return holder, others
}

// kill -9 of the lock holder after it took the lock and before it called
// the server: the others wait for its lease to expire (TTL 5 s), then one
// of them refreshes. One refresh, no failed request.
func TestFleet_KillHolderBeforeRefresh(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 3)
	holder := e.start(t, "holder", childHold+"=before")
	others := e.children(t, 4)
	e.clock.Advance(accessTTL)
	holder.send("burst 20")
	holder.event("refreshing")
	killed := time.Now()
	holder.kill()
	burst(t, 100, others...)
	takeover := time.Since(killed)
	st := e.be.Stats()
	if st.RefreshSucceeded != 1 || st.RefreshRejected != 0 {
		t.Errorf("server counted %d refreshes (%d rejected), want 1 (0)", st.RefreshSucceeded, st.RefreshRejected)
	}
	t.Logf("figures: takeover %v, %d refreshes, %d rejected, 0 of 400 requests failed", takeover.Round(time.Millisecond), st.RefreshSucceeded, st.RefreshRejected)
	for _, c := range others {
		c.quit()
	}
}

// kill -9 of the holder after the server rotated the token and before
// the write: the one loss no lock can prevent. Without a reuse interval
// the next holder's refresh token was already used: the server rejects
// it and the fleet signs out, each process once. With a reuse interval
// (>= lock TTL + refresh timeout) the next holder's refresh succeeds and
// nothing is lost.
func TestFleet_KillHolderAfterRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		opts        []backend.Option
		wantOK      int64 // refreshes the server answered with tokens
		wantRejects int64
		signedOut   bool
	}{
		{name: "no reuse interval", wantOK: 1, wantRejects: 1, signedOut: true},
		{name: "reuse interval", opts: []backend.Option{backend.WithRefreshReuseInterval(time.Minute)}, wantOK: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFleetEnv(t, 3, tc.opts...)
			holder, others := e.holderAfterRotation(t)
			killed := time.Now()
			holder.kill()
			res := burstRaw(t, 100, others...)
			takeover := time.Since(killed)
			failed := 0
			for i, r := range res {
				failed += r.fail
				if !tc.signedOut && r.fail != 0 {
					t.Errorf("%s: %d requests failed: %s", others[i].name, r.fail, r.first)
				}
				if tc.signedOut && r.ok != 0 {
					t.Errorf("%s: %d requests succeeded after the fleet lost its session", others[i].name, r.ok)
				}
			}
			st := e.be.Stats()
			if st.RefreshSucceeded != tc.wantOK || st.RefreshRejected != tc.wantRejects {
				t.Errorf("server: %d refreshes, %d rejected; want %d, %d", st.RefreshSucceeded, st.RefreshRejected, tc.wantOK, tc.wantRejects)
			}
			if _, ok := e.stored(t); ok == tc.signedOut {
				t.Errorf("record stored: %v, want %v", ok, !tc.signedOut)
			}
			for _, c := range others {
				want := 0
				if tc.signedOut {
					want = 1
				}
				if n := c.quit(); n != want {
					t.Errorf("%s: %d sign-outs, want %d", c.name, n, want)
				}
			}
			t.Logf("figures: takeover %v, %d refreshes, %d rejected, %d of 300 requests failed", takeover.Round(time.Millisecond), st.RefreshSucceeded, st.RefreshRejected, failed)
		})
	}
}

// SIGSTOP of the holder after the server rotated its token, past its
// lease TTL: another process takes the lock and refreshes (the server's
// reuse interval accepts the token once more); on SIGCONT the frozen
// process's write is refused (it is no longer the lock owner) and it
// adopts the stored record: its requests succeed with the new token and
// the record is the one the new holder wrote.
func TestFleet_FrozenHolderLateWriteRefused(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 3, backend.WithRefreshReuseInterval(time.Minute))
	holder, others := e.holderAfterRotation(t)
	holder.signal(syscall.SIGSTOP)
	stopped := time.Now()
	burst(t, 100, others...)
	takeover := time.Since(stopped)
	before, ok := e.stored(t)
	if !ok {
		t.Fatal("no record after the takeover")
	}
	holder.send("go")
	holder.signal(syscall.SIGCONT)
	r := parseBurst(t, holder.name, holder.expect("burst "))
	if r.fail != 0 {
		t.Errorf("frozen holder: %d of 20 requests failed: %s", r.fail, r.first)
	}
	after, _ := e.stored(t)
	if after != before {
		t.Error("the frozen holder's late write changed the stored record")
	}
	st := e.be.Stats()
	if st.RefreshSucceeded != 2 || st.RefreshRejected != 0 {
		t.Errorf("server: %d refreshes, %d rejected; want 2 (the frozen one and the takeover), 0", st.RefreshSucceeded, st.RefreshRejected)
	}
	burst(t, 50, append(others, holder)...)
	if st2 := e.be.Stats(); st2.RefreshCalls != st.RefreshCalls {
		t.Errorf("%d more refreshes after the holder came back", st2.RefreshCalls-st.RefreshCalls)
	}
	t.Logf("figures: takeover %v, %d refreshes, %d rejected, 0 of 520 requests failed", takeover.Round(time.Millisecond), st.RefreshSucceeded, st.RefreshRejected)
	for _, c := range append(others, holder) {
		c.quit()
	}
}

// kill -9 of the etcd leader (members are child processes): the two
// others elect a new leader; the next expiry is still one refresh and no
// request fails.
func TestFleet_EtcdLeaderKilled(t *testing.T) {
	t.Parallel()
	e := newFleetEnvOn(t, func(dir string) (*etcdtest.Cluster, error) { return etcdtest.StartProcesses(dir, 3, os.Args[0]) })
	cs := e.children(t, 5)
	burst(t, 100, cs...)
	l := e.cluster.Leader()
	if l < 0 {
		t.Fatal("no leader")
	}
	killed := time.Now()
	e.cluster.Kill(l)
	e.clock.Advance(accessTTL)
	burst(t, 200, cs...)
	took := time.Since(killed)
	st := e.be.Stats()
	if st.RefreshSucceeded != 1 || st.RefreshRejected != 0 {
		t.Errorf("server: %d refreshes, %d rejected; want 1, 0", st.RefreshSucceeded, st.RefreshRejected)
	}
	t.Logf("figures: leader m%d killed; expiry served in %v, %d refreshes, 0 of 1000 requests failed", l, took.Round(time.Millisecond), st.RefreshSucceeded)
	for _, c := range cs {
		c.quit()
	}
}

// invalid_grant on one process's refresh deletes the record under the
// lock; every process signs out once (one Unauthenticated each), and the
// server saw one refresh.
func TestFleet_InvalidGrantSignsOutFleet(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t, 3, backend.WithRefreshHook(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"invalid_grant","message":"revoked"}}`))
		return true
	}))
	cs := e.children(t, 5)
	e.clock.Advance(accessTTL)
	res := burstRaw(t, 50, cs...)
	for i, r := range res {
		if r.ok != 0 || !strings.Contains(r.first, "expired") {
			t.Errorf("%s: %d ok, first error %q; want every request to end with the session", cs[i].name, r.ok, r.first)
		}
	}
	if st := e.be.Stats(); st.RefreshCalls != 1 {
		t.Errorf("server saw %d refreshes, want 1", st.RefreshCalls)
	}
	if _, ok := e.stored(t); ok {
		t.Error("the record is still stored")
	}
	for _, c := range cs {
		if n := c.quit(); n != 1 {
			t.Errorf("%s: %d sign-outs, want 1", c.name, n)
		}
	}
}
