package actors

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// A request that finds its session's refresh published in the view waits
// on the view and gets the flight's reply: the grant, or the failure. The
// client has no coordinator (an Ask would fail with ErrNoReply), so the
// answers can only come from the view.
func TestTokenClient_WaitsOnThePublishedFlightWithoutAsking(t *testing.T) {
	sys := newTestSystem(t)
	view := &TokenView{}
	view.putAccount(messages.TokenSnapshot{UID: "a", Generation: 1, Version: 3, AccessToken: "a3"})
	tc := &TokenClient{System: sys, View: view, UID: "a"}
	ctx := authCtx(t)

	for _, tc2 := range []struct {
		name  string
		reply any
		check func(*messages.TokenSnapshot, error) error
	}{
		{"grant", &messages.TokenGrant{Snapshot: messages.TokenSnapshot{UID: "a", Generation: 1, Version: 4, AccessToken: "a4"}},
			func(s *messages.TokenSnapshot, err error) error {
				if err != nil || s.AccessToken != "a4" {
					return errors.New("not the flight's grant")
				}
				return nil
			}},
		{"failure", fail(messages.ErrSessionExpired),
			func(s *messages.TokenSnapshot, err error) error {
				if !errors.Is(err, messages.ErrSessionExpired) || s != nil {
					return errors.New("not the flight's failure")
				}
				return nil
			}},
	} {
		t.Run(tc2.name, func(t *testing.T) {
			sig := view.setFlight("a", 1, 3)
			type res struct {
				s   *messages.TokenSnapshot
				err error
			}
			got := make(chan res, 2)
			go func() { s, err := tc.Token(ctx); got <- res{s, err} }()
			go func() {
				s, err := tc.Unauthorized(ctx, &messages.TokenSnapshot{UID: "a", Generation: 1, Version: 3})
				got <- res{s, err}
			}()
			for sig.waiters.Load() < 2 {
				select {
				case r := <-got:
					t.Fatalf("answered before the flight ended: %+v", r)
				default:
				}
				runtime.Gosched()
			}
			view.finishFlight("a", tc2.reply)
			for range 2 {
				r := <-got
				if err := tc2.check(r.s, r.err); err != nil {
					t.Fatalf("%v: %+v, %v", err, r.s, r.err)
				}
			}
			if view.Refreshing("a", 1) {
				t.Fatal("flight still published")
			}
		})
	}
}

// A waiter whose context ends stops waiting and is no longer counted.
func TestTokenClient_FlightWaitEndsWithContext(t *testing.T) {
	view := &TokenView{}
	view.putAccount(messages.TokenSnapshot{UID: "a", Generation: 1, Version: 1})
	sig := view.setFlight("a", 1, 1)
	tc := &TokenClient{System: newTestSystem(t), View: view, UID: "a"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := tc.Token(ctx); done <- err }()
	for sig.waiters.Load() < 1 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if n := sig.waiters.Load(); n != 0 {
		t.Fatalf("%d waiters after the only one left", n)
	}
}

// A refused request whose session already holds a newer token (and no
// refresh of it is published) replays with that token at once and is
// counted as a replay; an older or another session's token is no answer.
func TestTokenView_NewerAnswersARefusal(t *testing.T) {
	view := &TokenView{}
	view.putAccount(messages.TokenSnapshot{UID: "a", Generation: 2, Version: 5, AccessToken: "a5"})
	tc := &TokenClient{System: newTestSystem(t), View: view}
	s, err := tc.Unauthorized(authCtx(t), &messages.TokenSnapshot{UID: "a", Generation: 2, Version: 4})
	if err != nil || s.AccessToken != "a5" {
		t.Fatalf("got %+v, %v; want a5", s, err)
	}
	if n := view.replays.Load(); n != 1 {
		t.Fatalf("%d replays counted, want 1", n)
	}
	for _, sent := range []messages.TokenSnapshot{
		{UID: "a", Generation: 2, Version: 5}, // the newest: a refresh is needed
		{UID: "a", Generation: 1, Version: 4}, // another session
		{UID: "b", Generation: 2, Version: 4}, // another account
	} {
		if n := view.newer(&sent); n != nil {
			t.Fatalf("newer(%+v) = %+v, want nil", sent, n)
		}
	}
	view.setFlight("a", 2, 5)
	if n := view.newer(&messages.TokenSnapshot{UID: "a", Generation: 2, Version: 4}); n != nil {
		t.Fatalf("newer answered while a refresh of the session is published: %+v", n)
	}
	view.finishFlights(messages.ErrClosed)
	if view.inFlight.Load() != 0 {
		t.Fatal("flights left after finishFlights")
	}
}

// AwaitFlight counts the requests waiting on the view: three requests
// inside the hard window wait for the one refresh, and the watch for three
// waiters is answered while the refresher is still blocked.
func TestRefreshCoordinator_AwaitFlightCountsViewWaiters(t *testing.T) {
	clock := &movingClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	vs := newViewStore(t, nil, WithAuthStoreClock(clock.Now))
	rf := &perUIDRefresher{calls: map[string]int{}, called: make(chan string, 10), release: make(chan struct{}), exp: clock.Now().Add(time.Hour)}
	cpid := vs.sys.Root.Spawn(NewRefreshCoordinatorProps(vs.pid, vs.view, rf.refresh, WithRefreshClock(clock.Now)))
	t.Cleanup(func() { _ = StopAndWait(context.Background(), vs.sys, cpid) })
	ctx := authCtx(t)
	saveAs(t, vs.sys, vs.pid, messages.AuthRecord{UID: "a", AccessToken: "a1", RefreshToken: "ra", ExpiresAt: clock.Now().Add(time.Hour)}, true)
	clock.Advance(time.Hour - 5*time.Second) // inside the hard window
	tc := &TokenClient{System: vs.sys, Coordinator: cpid, View: vs.view, Now: clock.Now}
	// The first request starts the flight (an Ask); once it is published,
	// the others wait on the view.
	results := make(chan error, 3)
	go func() { _, err := tc.Token(ctx); results <- err }()
	select {
	case <-rf.called:
	case err := <-results:
		t.Fatalf("the first request did not wait for a refresh: %v", err)
	case <-ctx.Done():
		t.Fatal("no refresh started")
	}
	for range 2 {
		go func() { _, err := tc.Token(ctx); results <- err }()
	}
	info, err := AskAs[*messages.FlightInfo](ctx, vs.sys, cpid, &messages.AwaitFlight{UID: "a", Waiters: 3})
	if err != nil || info.Waiters != 3 {
		t.Fatalf("AwaitFlight: %+v, %v", info, err)
	}
	close(rf.release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("Token: %v", err)
		}
	}
	if n := rf.count("a"); n != 1 {
		t.Fatalf("%d refresh calls, want 1", n)
	}
}
