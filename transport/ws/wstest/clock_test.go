package wstest

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestClockAdvanceFiresInOrder(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	var fired []int
	c.AfterFunc(3*time.Second, func() { fired = append(fired, 3) })
	c.AfterFunc(1*time.Second, func() { fired = append(fired, 1) })
	stopped := c.AfterFunc(2*time.Second, func() { fired = append(fired, 2) })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should report true once")
	}
	if err := c.WaitTimers(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Second)
	if !slices.Equal(fired, []int{1}) || !c.Now().Equal(time.Unix(2, 0)) {
		t.Fatalf("fired %v now %v", fired, c.Now())
	}
	c.Advance(time.Second)
	if !slices.Equal(fired, []int{1, 3}) || len(c.Pending()) != 0 {
		t.Fatalf("fired %v pending %v", fired, c.Pending())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitTimers(ctx, 1); err == nil {
		t.Fatal("WaitTimers ignored ctx")
	}
}
