package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/internal/etcdtest"
)

const (
	accessTTL = time.Hour
	prefix    = "/pigeon-example"
	requests  = 50 // per replica per round
)

// clock is the backend's clock, moved past each token's expiry.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// replica is one service instance: its own etcd client and pigeon client.
type replica struct {
	name string
	cli  *clientv3.Client
	p    *pigeon.AuthorizedPigeon
	// holding, when set, is closed when this replica's refresh starts (it
	// holds the account lock) and the refresh then blocks until its
	// context ends: the replica "dies" mid-refresh.
	holding chan struct{}
}

// refresher is the replicas' RefreshTokenManager.
type refresher struct {
	pigeon.JSONRefresher
	r *replica
}

func (f refresher) RefreshToken(ctx context.Context, rt string, c *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	if h := f.r.holding; h != nil {
		close(h)
		<-ctx.Done()
		return pigeon.RefreshTokenResponse{}, ctx.Err()
	}
	return f.JSONRefresher.RefreshToken(ctx, rt, c)
}

func run(ctx context.Context, out io.Writer, expiries int) error {
	dir, err := os.MkdirTemp("", "pigeon-fleet-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cluster, err := etcdtest.Start(dir, 3)
	if err != nil {
		return err
	}
	defer cluster.Close()
	fmt.Fprintln(out, "etcd: 3 members on 127.0.0.1")

	clk := &clock{}
	be := backend.New(backend.WithClock(clk.Now), backend.WithAccessTTL(accessTTL))
	defer be.Close()
	srv := httptest.NewServer(be)
	defer srv.Close()
	user, err := be.CreateUser("fleet@example.com", "correct horse battery staple")
	if err != nil {
		return err
	}
	key := []byte("example key, 32 bytes, not this!")

	var reps []*replica
	defer func() {
		for _, r := range reps {
			r.close()
		}
	}()
	for i := range 3 {
		r, err := newReplica(cluster, fmt.Sprintf("replica-%d", i), srv.URL, key)
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	// One login, saved by one replica, is every replica's account.
	if err := reps[0].p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: user.UID, AccessToken: user.AccessToken,
		RefreshToken: user.RefreshToken, ExpiresAt: user.ExpiresAt}); err != nil {
		return err
	}
	for _, r := range reps[1:] {
		if err := r.waitSignedIn(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "3 replicas share %s's account\n", user.UID)

	for k := 1; k <= expiries; k++ {
		clk.off.Add(int64(accessTTL))
		if err := round(ctx, reps...); err != nil {
			return err
		}
		fmt.Fprintf(out, "expiry %d: %d requests, refreshes counted by the server: %d\n", k, 3*requests, be.Stats().RefreshSucceeded)
	}

	// Kill the lock holder mid-refresh.
	holder := reps[0]
	holder.holding = make(chan struct{})
	clk.off.Add(int64(accessTTL))
	done := make(chan error, 1)
	go func() {
		_, err := holder.p.Get(ctx, "/me")
		done <- err
	}()
	select {
	case <-holder.holding:
	case <-ctx.Done():
		return ctx.Err()
	}
	killed := time.Now()
	_ = holder.cli.Close() // its lease is no longer renewed
	if err := round(ctx, reps[1:]...); err != nil {
		return err
	}
	fmt.Fprintf(out, "lock holder %s killed mid-refresh: the others took over after its lease expired (%.0fs); refreshes counted by the server: %d (one per expiry)\n",
		holder.name, time.Since(killed).Seconds(), be.Stats().RefreshSucceeded)
	holder.close()
	<-done
	reps = reps[1:]
	return nil
}

func newReplica(c *etcdtest.Cluster, name, base string, key []byte) (*replica, error) {
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	r := &replica{name: name, cli: cli}
	r.p, err = pigeon.NewAuthorized(refresher{JSONRefresher: pigeon.JSONRefresher{Path: "/auth/refresh"}, r: r},
		pigeon.WithBaseURL(base), pigeon.WithEtcd(cli, prefix), pigeon.WithEncryptionKey(key))
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	return r, nil
}

// waitSignedIn returns once the replica's auth stream says Authenticated:
// the login reached it through the watch.
func (r *replica) waitSignedIn(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := r.p.SubscribeAuth(ctx)
	if err != nil {
		return err
	}
	for s := range st {
		if s.State == pigeon.Authenticated {
			return nil
		}
	}
	return errors.New(r.name + ": never signed in")
}

func (r *replica) close() {
	if r.p != nil {
		_ = r.p.Close()
		r.p = nil
	}
	_ = r.cli.Close()
}

// round sends requests concurrent GET /me through every replica; every
// one must succeed.
func round(ctx context.Context, reps ...*replica) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []error
	)
	for _, r := range reps {
		for range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := r.p.Get(ctx, "/me")
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("%s: %w", r.name, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return errors.Join(failed...)
}
