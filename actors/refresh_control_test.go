package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// movingClock is a clock tests move by hand (Now only: the coordinator
// keeps no timers).
type movingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *movingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *movingClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// A configuration error (ErrRefreshMisconfigured) backs off at the top
// step at once; any other transient failure walks up from the first. The
// jitter source asks for the longest delay of each step, so a step of d
// holds 401s for d-1ns: base 1s, max 8s.
func TestRefreshBackoff_MisconfiguredJumpsToTheTopStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		// heldAfter1s: a 401 one second after the failure still fails
		// fast without a call.
		heldAfter1s bool
	}{
		{"transient", errors.New("503"), false},
		{"misconfigured", fmt.Errorf("invalid_client: %w", messages.ErrRefreshMisconfigured), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &movingClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			vs := newViewStore(t, nil, WithAuthStoreClock(clock.Now))
			var calls atomic.Int32
			rf := func(context.Context, string, messages.Secret) (messages.RefreshedTokens, error) {
				calls.Add(1)
				return messages.RefreshedTokens{}, tc.err
			}
			cpid := vs.sys.Root.Spawn(NewRefreshCoordinatorProps(vs.pid, vs.view, rf, WithRefreshClock(clock.Now),
				WithRefreshBackoff(time.Second, 8*time.Second), WithRefreshRand(func(n int64) int64 { return n - 1 })))
			t.Cleanup(func() { _ = StopAndWait(context.Background(), vs.sys, cpid) })
			ctx := authCtx(t)
			s := saveAs(t, vs.sys, vs.pid, messages.AuthRecord{UID: "a", AccessToken: "a1", RefreshToken: "ra"}, true)
			report := func() error {
				_, err := AskAs[*messages.TokenGrant](ctx, vs.sys, cpid, &messages.ReportUnauthorized{UID: "a", Generation: s.Generation, Version: s.Version})
				return err
			}
			if err := report(); !errors.Is(err, messages.ErrRefreshUnavailable) || !errors.Is(err, tc.err) {
				t.Fatalf("first 401: %v, want ErrRefreshUnavailable wrapping %v", err, tc.err)
			}
			clock.Advance(time.Second)
			_ = report()
			if held := calls.Load() == 1; held != tc.heldAfter1s {
				t.Fatalf("1s after the failure: %d calls, held %v; want held %v", calls.Load(), held, tc.heldAfter1s)
			}
			clock.Advance(7 * time.Second) // 8s after the first failure: past the top step
			calls.Store(0)
			_ = report()
			if calls.Load() != 1 {
				t.Fatalf("past the top step: %d calls, want 1", calls.Load())
			}
		})
	}
}

// ForceRefresh refreshes a valid token, joins a flight in flight (one
// call however many ask), and the flight's waiters can be awaited
// (AwaitFlight), AwaitNoFlight answers at once without one;
// SubscribeRefreshes sees the outcome, and its channel is closed by
// UnsubscribeRefreshes and by the coordinator's stop.
func TestRefreshCoordinator_ForceJoinsAndPublishes(t *testing.T) {
	clock := &movingClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	vs := newViewStore(t, nil, WithAuthStoreClock(clock.Now))
	rf := &perUIDRefresher{calls: map[string]int{}, called: make(chan string, 10), release: make(chan struct{}), exp: clock.Now().Add(time.Hour)}
	cpid := vs.sys.Root.Spawn(NewRefreshCoordinatorProps(vs.pid, vs.view, rf.refresh, WithRefreshClock(clock.Now)))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = StopAndWait(context.Background(), vs.sys, cpid)
		}
	})
	ctx := authCtx(t)
	saveAs(t, vs.sys, vs.pid, messages.AuthRecord{UID: "a", AccessToken: "a1", RefreshToken: "ra"}, true)
	sub, err := AskAs[*messages.RefreshSubscription](ctx, vs.sys, cpid, &messages.SubscribeRefreshes{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := AskAs[*messages.RefreshSubscription](ctx, vs.sys, cpid, &messages.SubscribeRefreshes{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	vs.sys.Root.Send(cpid, &messages.UnsubscribeRefreshes{ID: gone.ID})
	if _, ok := <-gone.C; ok {
		t.Fatal("an unsubscribed channel got an event")
	}

	results := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := AskAs[*messages.TokenGrant](ctx, vs.sys, cpid, &messages.ForceRefresh{})
			results <- err
		}()
	}
	if info, err := AskAs[*messages.FlightInfo](ctx, vs.sys, cpid, &messages.AwaitFlight{UID: "a", Waiters: 3}); err != nil || info.Waiters != 3 {
		t.Fatalf("AwaitFlight: %+v, %v", info, err)
	}
	close(rf.release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("ForceRefresh: %v", err)
		}
	}
	if n := rf.count("a"); n != 1 {
		t.Fatalf("%d refresh calls for three forced refreshes in one flight, want 1", n)
	}
	if s := vs.view.Current(); s.AccessToken != "new-a" {
		t.Fatalf("token after the forced refresh %q", s.AccessToken)
	}
	ev := <-sub.C
	if ev.UID != "a" || ev.Outcome != messages.RefreshSucceeded || !ev.ExpiresAt.Equal(rf.exp) || ev.Err != nil {
		t.Fatalf("event %+v, want a succeeded, expiring %v", ev, rf.exp)
	}
	if _, err := AskAs[*messages.TokenGrant](ctx, vs.sys, cpid, &messages.ForceRefresh{UID: "nobody"}); !errors.Is(err, messages.ErrUnknownAccount) {
		t.Fatalf("ForceRefresh of an unknown account: %v", err)
	}
	if info, err := AskAs[*messages.FlightInfo](ctx, vs.sys, cpid, &messages.AwaitNoFlight{UID: "a"}); err != nil || info.Waiters != 0 {
		t.Fatalf("AwaitNoFlight with no flight: %+v, %v", info, err)
	}
	stopped = true
	if err := StopAndWait(ctx, vs.sys, cpid); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub.C; ok {
		t.Fatal("the subscription got another event")
	}
}
