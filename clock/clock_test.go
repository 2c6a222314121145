package clock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Wait waits on the clock it is given: a fake clock's wait ends when the
// clock is moved past it, not before; a cancelled ctx ends it at once and
// leaves no timer behind.
func TestWait_FollowsTheClock(t *testing.T) {
	c := wstest.NewClock(time.Unix(1_700_000_000, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- clock.Wait(ctx, c, time.Minute) }()
	if err := c.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before its minute passed", err)
	default:
	}
	c.Advance(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}

	wctx, wcancel := context.WithCancel(ctx)
	go func() { done <- clock.Wait(wctx, c, time.Hour) }()
	if err := c.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v, want context.Canceled", err)
	}
	if p := c.Pending(); len(p) != 0 {
		t.Fatalf("timers left behind: %v", p)
	}
}

// NowFunc reads the given time and waits in real time.
func TestNowFunc_ShiftsTheHourOnly(t *testing.T) {
	fixed := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := clock.NowFunc(func() time.Time { return fixed })
	if got := c.Now(); !got.Equal(fixed) {
		t.Fatalf("Now %v, want %v", got, fixed)
	}
	fired := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(fired) })
	<-fired
	if clock.NowFunc(nil).Now().IsZero() {
		t.Fatal("NowFunc(nil) has no time")
	}
}
