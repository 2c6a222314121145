package actors

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/messages"
)

type echo struct {
	hold chan struct{}
	got  chan struct{} // receives once per *slow that arrived
	sent chan struct{} // closed once the late reply of *slow was sent
}

type ping struct{ n int }
type pong struct{ n int }
type slow struct{}
type failReq struct{}

func (e *echo) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *ping:
		c.Respond(&pong{n: m.n})
	case *slow:
		// reply only after the test releases it: a late reply must be dropped
		hold, sent := e.hold, e.sent
		if e.got != nil {
			e.got <- struct{}{}
		}
		sender := c.Sender()
		root := c.ActorSystem().Root
		go func() {
			defer close(sent)
			<-hold
			root.Send(sender, &pong{})
		}()
	case *failReq:
		c.Respond(messages.ErrNoAuth)
	}
}

func newTestSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	return sys
}

func TestAskReturnsReply(t *testing.T) {
	sys := newTestSystem(t)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{} }))
	defer sys.Root.Stop(pid)
	got, err := AskAs[*pong](context.Background(), sys, pid, &ping{n: 7})
	if err != nil || got.n != 7 {
		t.Fatalf("AskAs = %v, %v; want pong 7", got, err)
	}
}

func TestAskErrorReplyIsError(t *testing.T) {
	sys := newTestSystem(t)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{} }))
	defer sys.Root.Stop(pid)
	_, err := Ask(context.Background(), sys, pid, &failReq{})
	if !errors.Is(err, messages.ErrNoAuth) {
		t.Fatalf("err = %v, want ErrNoAuth", err)
	}
}

func TestAskWrongReplyType(t *testing.T) {
	sys := newTestSystem(t)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{} }))
	defer sys.Root.Stop(pid)
	_, err := AskAs[string](context.Background(), sys, pid, &ping{})
	if err == nil {
		t.Fatal("want a type error")
	}
}

func TestAskHonoursCancelAndDropsLateReply(t *testing.T) {
	sys := newTestSystem(t)
	hold, sent, got := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{hold: hold, sent: sent, got: got} }))
	defer sys.Root.Stop(pid)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := Ask(ctx, sys, pid, &slow{}); done <- err }()
	<-got // the request is with the actor; now the caller gives up
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(hold) // the late reply now goes to a removed process: a dead letter, never a race
	<-sent
	// a following ask still works
	if _, err := AskAs[*pong](context.Background(), sys, pid, &ping{}); err != nil {
		t.Fatal(err)
	}
}

func TestAskDeadActor(t *testing.T) {
	sys := newTestSystem(t)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{} }))
	if err := StopAndWait(context.Background(), sys, pid); err != nil {
		t.Fatal(err)
	}
	_, err := Ask(context.Background(), sys, pid, &ping{})
	if !errors.Is(err, ErrNoReply) || !errors.Is(err, messages.ErrClosed) {
		t.Fatalf("err = %v, want ErrNoReply", err)
	}
}

// expiring is a context whose deadline passes when the test says so, so that
// the test need not race a real timer against the request being sent.
type expiring struct {
	context.Context
	done chan struct{}
}

func (e *expiring) Done() <-chan struct{} { return e.done }
func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestAskDeadlineExceeded(t *testing.T) {
	sys := newTestSystem(t)
	hold, sent, got := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &echo{hold: hold, sent: sent, got: got} }))
	defer sys.Root.Stop(pid)
	ctx := &expiring{Context: context.Background(), done: make(chan struct{})}
	done := make(chan error, 1)
	go func() { _, err := Ask(ctx, sys, pid, &slow{}); done <- err }()
	<-got
	close(ctx.done)
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(hold)
	<-sent
}
