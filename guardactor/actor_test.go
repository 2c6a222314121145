package guardactor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/guardactor"
	"github.com/apppigeon/pigeon/messages"
)

func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := actors.NewSystem(zaptest.NewLogger(t), actors.WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	return sys
}

func spawnGuard(t *testing.T, sys *actor.ActorSystem, opts ...guardactor.ActorOption) *actor.PID {
	t.Helper()
	props, err := guardactor.NewProps(authTree(t), append([]guardactor.ActorOption{guardactor.WithActorLogger(zaptest.NewLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	pid := sys.Root.Spawn(props)
	t.Cleanup(func() { _ = actors.StopAndWait(context.Background(), sys, pid) })
	return pid
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func navigate(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, loc string) *messages.Navigated {
	t.Helper()
	n, err := actors.AskAs[*messages.Navigated](testCtx(t), sys, pid, &messages.Navigate{Location: loc})
	if err != nil {
		t.Fatalf("Navigate %s: %v", loc, err)
	}
	return n
}

func setGuard(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, passes bool) *messages.GuardChangedAck {
	t.Helper()
	ack, err := actors.AskAs[*messages.GuardChangedAck](testCtx(t), sys, pid, &messages.GuardChanged{Guard: "auth", Passes: passes})
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func subscribe(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, buffer int) *messages.RedirectSubscription {
	t.Helper()
	s, err := actors.AskAs[*messages.RedirectSubscription](testCtx(t), sys, pid, &messages.SubscribeRedirects{Buffer: buffer})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func receive(t *testing.T, c <-chan *messages.Redirected) *messages.Redirected {
	t.Helper()
	select {
	case ev, ok := <-c:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-testCtx(t).Done():
		t.Fatal("no redirect published")
	}
	return nil
}

func TestActor_NavigateReplyAndLocation(t *testing.T) {
	sys := newSystem(t)
	pid := spawnGuard(t, sys, guardactor.WithInitialStates(guardactor.Snapshot{"auth": false}))
	n := navigate(t, sys, pid, "/dashboard/3")
	if n.Location != "/login?continue=%2Fdashboard%2F3" || len(n.Hops) != 1 || n.Hops[0].Guard != "auth" || n.Hops[0].Rule != "blocked" {
		t.Fatalf("Navigated = %+v", n)
	}
	cur, err := actors.AskAs[*messages.CurrentLocation](testCtx(t), sys, pid, &messages.GetLocation{})
	if err != nil || cur.Location != n.Location {
		t.Fatalf("GetLocation = %+v, %v", cur, err)
	}
	if _, err := actors.Ask(testCtx(t), sys, pid, &messages.Navigate{Location: "//evil.example"}); !errors.Is(err, guardactor.ErrInvalidLocation) {
		t.Fatalf("bad location err = %v", err)
	}
	n = navigate(t, sys, pid, "/nowhere")
	if !n.NotFound || n.Location != "/nowhere" {
		t.Fatalf("Navigated = %+v", n)
	}
}

func TestActor_UnknownGuardStateIsAnError(t *testing.T) {
	sys := newSystem(t)
	pid := spawnGuard(t, sys)
	if _, err := actors.Ask(testCtx(t), sys, pid, &messages.Navigate{Location: "/dashboard/1"}); !errors.Is(err, guardactor.ErrGuardState) {
		t.Fatalf("err = %v, want ErrGuardState", err)
	}
	// A failed report makes the guard unusable, never passing.
	if _, err := actors.Ask(testCtx(t), sys, pid, &messages.GuardChanged{Guard: "auth", Err: errors.New("token store down")}); err != nil {
		t.Fatal(err)
	}
	if _, err := actors.Ask(testCtx(t), sys, pid, &messages.Navigate{Location: "/dashboard/1"}); !errors.Is(err, guardactor.ErrGuardState) {
		t.Fatalf("err = %v, want ErrGuardState", err)
	}
	if _, err := actors.Ask(testCtx(t), sys, pid, &messages.GuardChanged{Guard: "nope", Passes: true}); !errors.Is(err, guardactor.ErrGuardNotRegistered) {
		t.Fatalf("err = %v, want ErrGuardNotRegistered", err)
	}
}

func TestActor_GuardChangeReevaluatesAndPublishes(t *testing.T) {
	sys := newSystem(t)
	pid := spawnGuard(t, sys, guardactor.WithInitialStates(guardactor.Snapshot{"auth": false}))
	sub := subscribe(t, sys, pid, 0)
	navigate(t, sys, pid, "/dashboard/3")

	ack := setGuard(t, sys, pid, true)
	if !ack.Redirected || ack.Location != "/dashboard/3" {
		t.Fatalf("ack = %+v", ack)
	}
	ev := receive(t, sub.C)
	if ev.From != "/login?continue=%2Fdashboard%2F3" || ev.To != "/dashboard/3" || ev.Rule != "discard" || ev.Guard != "auth" || ev.Dropped != 0 {
		t.Fatalf("event = %+v", ev)
	}

	// An auth-status stream drives the guard through a Follower.
	status := make(chan bool)
	f := guardactor.FollowBool(sys, pid, "auth", status)
	defer f.Close()
	status <- false
	ev = receive(t, sub.C)
	if ev.From != "/dashboard/3" || ev.To != "/login?continue=%2Fdashboard%2F3" || ev.Seq != 2 {
		t.Fatalf("event = %+v", ev)
	}
	status <- true
	if ev = receive(t, sub.C); ev.To != "/dashboard/3" {
		t.Fatalf("event = %+v", ev)
	}
	close(status)
	<-f.Done()

	// No move, no event: unsubscribing closes the channel and nothing is
	// left in it.
	if ack := setGuard(t, sys, pid, true); ack.Redirected {
		t.Fatalf("ack = %+v", ack)
	}
	u, err := actors.AskAs[*messages.UnsubscribedRedirects](testCtx(t), sys, pid, &messages.UnsubscribeRedirects{ID: sub.ID})
	if err != nil || !u.Found {
		t.Fatalf("unsubscribe = %+v, %v", u, err)
	}
	if ev, ok := <-sub.C; ok {
		t.Fatalf("unexpected event after unsubscribe: %+v", ev)
	}
}

func TestActor_SlowSubscriberDoesNotBlock(t *testing.T) {
	sys := newSystem(t)
	pid := spawnGuard(t, sys, guardactor.WithInitialStates(guardactor.Snapshot{"auth": false}))
	slow := subscribe(t, sys, pid, 1) // never read until the end
	fast := subscribe(t, sys, pid, 64)
	navigate(t, sys, pid, "/dashboard/3")

	const toggles = 20
	for i := 0; i < toggles; i++ {
		// Each ask returns only after the actor published: it was not
		// blocked by the slow subscriber.
		if ack := setGuard(t, sys, pid, i%2 == 0); !ack.Redirected {
			t.Fatalf("toggle %d: ack = %+v", i, ack)
		}
		if ev := receive(t, fast.C); ev.Seq != uint64(i+1) || ev.Dropped != 0 {
			t.Fatalf("fast subscriber event %d = %+v", i, ev)
		}
	}
	ev := receive(t, slow.C)
	if ev.Seq != toggles || ev.Dropped != toggles-1 {
		t.Fatalf("slow subscriber got %+v, want the newest (seq %d) with %d dropped", ev, toggles, toggles-1)
	}
	select {
	case ev := <-slow.C:
		t.Fatalf("slow queue held more than its capacity: %+v", ev)
	default:
	}
}

func TestActor_GuardChecksRunOffTheMailbox(t *testing.T) {
	sys := newSystem(t)
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	var calls int
	slow := guardactor.GuardFunc("auth", func(ctx context.Context) (bool, error) {
		calls++ // only one check runs at a time in this test
		started <- struct{}{}
		select {
		case <-release:
			return calls == 1, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	})
	pid := spawnGuard(t, sys, guardactor.WithGuards(slow))
	<-started

	// Navigate waits for the running check; meanwhile the mailbox serves
	// other requests.
	navDone := make(chan *messages.Navigated, 1)
	navErr := make(chan error, 1)
	go func() {
		n, err := actors.AskAs[*messages.Navigated](testCtx(t), sys, pid, &messages.Navigate{Location: "/dashboard/5"})
		navDone <- n
		navErr <- err
	}()
	if _, err := actors.AskAs[*messages.CurrentLocation](testCtx(t), sys, pid, &messages.GetLocation{}); err != nil {
		t.Fatalf("mailbox blocked by the guard check: %v", err)
	}
	close(release)
	if n, err := <-navDone, <-navErr; err != nil || n.Location != "/dashboard/5" {
		t.Fatalf("Navigate = %+v, %v", n, err)
	}

	// A recheck that now fails redirects the current location.
	sub := subscribe(t, sys, pid, 0)
	st, err := actors.AskAs[*messages.GuardStates](testCtx(t), sys, pid, &messages.RecheckGuards{})
	if err != nil || st.Passes["auth"] {
		t.Fatalf("recheck = %+v, %v", st, err)
	}
	if ev := receive(t, sub.C); ev.To != "/login?continue=%2Fdashboard%2F5" {
		t.Fatalf("event = %+v", ev)
	}
}

func TestActor_FailingChecksAreErrors(t *testing.T) {
	tests := []struct {
		name  string
		check func(context.Context) (bool, error)
	}{
		{"error", func(context.Context) (bool, error) { return true, errors.New("down") }},
		{"panic", func(context.Context) (bool, error) { panic("boom") }},
		{"timeout", func(ctx context.Context) (bool, error) { <-ctx.Done(); return true, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := newSystem(t)
			pid := spawnGuard(t, sys, guardactor.WithGuards(guardactor.GuardFunc("auth", tt.check)),
				guardactor.WithActorCheckTimeout(20*time.Millisecond))
			_, err := actors.Ask(testCtx(t), sys, pid, &messages.Navigate{Location: "/dashboard/1"})
			if !errors.Is(err, guardactor.ErrGuardState) || !errors.Is(err, guardactor.ErrGuardCheck) {
				t.Fatalf("err = %v, want ErrGuardState wrapping ErrGuardCheck", err)
			}
			st, err := actors.AskAs[*messages.GuardStates](testCtx(t), sys, pid, &messages.GetGuardStates{})
			if err != nil || st.Errors["auth"] == "" {
				t.Fatalf("states = %+v, %v", st, err)
			}
		})
	}
}

func TestNewProps_Validates(t *testing.T) {
	if _, err := guardactor.NewProps(nil); err == nil {
		t.Fatal("nil router accepted")
	}
	other := guardactor.GuardFunc("other", func(context.Context) (bool, error) { return true, nil })
	if _, err := guardactor.NewProps(authTree(t), guardactor.WithGuards(other)); !errors.Is(err, guardactor.ErrGuardNotRegistered) {
		t.Fatalf("err = %v", err)
	}
}

// A restart ends every subscription with an error wrapping
// ErrActorRestarted (its channel closes, Err says why) and answers parked
// Navigate and RecheckGuards requests with it; the new incarnation
// ignores the old one's check results and serves requests.
func TestActor_RestartFailsSubscribersAndWaiters(t *testing.T) {
	sys := newSystem(t)
	started := make(chan struct{}, 8)
	hold := guardactor.GuardFunc("auth", func(ctx context.Context) (bool, error) {
		started <- struct{}{}
		<-ctx.Done() // until the incarnation ends
		return false, ctx.Err()
	})
	pid := spawnGuard(t, sys, guardactor.WithGuards(hold))
	<-started
	sub := subscribe(t, sys, pid, 0)
	if err := sub.Err(); err != nil {
		t.Fatalf("open subscription Err = %v", err)
	}
	// One sender, so the actor sees Navigate before RecheckGuards; the
	// recheck's run starting proves both were handled (and parked).
	replies := make(chan any, 2)
	inbox := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, sys := c.Message().(actor.SystemMessage); !sys {
			replies <- c.Message()
		}
	}))
	t.Cleanup(func() { _ = actors.StopAndWait(context.Background(), sys, inbox) })
	sys.Root.RequestWithCustomSender(pid, &messages.Navigate{Location: "/dashboard/5"}, inbox)
	sys.Root.RequestWithCustomSender(pid, &messages.RecheckGuards{}, inbox)
	<-started
	proc, _ := sys.ProcessRegistry.Get(pid)
	proc.SendSystemMessage(pid, &actor.Restart{})
	for i := 0; i < 2; i++ {
		select {
		case r := <-replies:
			if err, _ := r.(error); !errors.Is(err, messages.ErrActorRestarted) {
				t.Fatalf("reply %d = %v, want ErrActorRestarted", i, r)
			}
		case <-testCtx(t).Done():
			t.Fatal("a parked request was never answered")
		}
	}
	if _, ok := <-sub.C; ok {
		t.Fatal("subscription open after restart")
	}
	if err := sub.Err(); !errors.Is(err, messages.ErrActorRestarted) {
		t.Fatalf("subscription Err = %v", err)
	}
	<-started // the new incarnation checks again
	if _, err := actors.AskAs[*messages.CurrentLocation](testCtx(t), sys, pid, &messages.GetLocation{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
