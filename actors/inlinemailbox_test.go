package actors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap/zaptest"
)

type mbSeq struct {
	sender, n int
}

type mbGet struct{}

// mbActor records per-sender sequence numbers without locks: -race fails
// the test if two goroutines ever run it at once.
type mbActor struct {
	last  map[int]int
	count int
	bad   int
}

func (a *mbActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.last = map[int]int{}
	case *mbSeq:
		if prev, ok := a.last[m.sender]; ok && m.n != prev+1 {
			a.bad++
		}
		a.last[m.sender] = m.n
		a.count++
	case *mbGet:
		ctx.Respond([2]int{a.count, a.bad})
	}
}

func TestInlineMailboxOrderAndExclusion(t *testing.T) {
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &mbActor{} }, actor.WithMailbox(newInlineMailbox)))
	const senders, each = 4, 2000
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				sys.Root.Send(pid, &mbSeq{sender: s, n: n})
			}
		}()
	}
	wg.Wait()
	r, err := AskAs[[2]int](context.Background(), sys, pid, &mbGet{})
	if err != nil {
		t.Fatal(err)
	}
	if r[0] != senders*each || r[1] != 0 {
		t.Fatalf("got %d messages with %d out of order, want %d in order", r[0], r[1], senders*each)
	}
}

type mbStopOnMsg struct{ senderDone <-chan struct{} }

// mbWaiter stops itself on a user message and, in Stopping, waits for the
// goroutine that sent that message — as SocketConn waits for its reader
// and dial goroutines. It deadlocks if Stopping ran on the sender.
type mbWaiter struct {
	done <-chan struct{}
}

func (a *mbWaiter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *mbStopOnMsg:
		a.done = m.senderDone
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		if a.done != nil {
			<-a.done
		}
	}
}

func TestInlineMailboxSystemMessagesNeverRunOnSender(t *testing.T) {
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &mbWaiter{} }, actor.WithMailbox(newInlineMailbox)))
	w := &watchProcess{done: make(chan struct{})}
	wpid, _ := sys.ProcessRegistry.Add(w, "mbwatch")
	defer sys.ProcessRegistry.Remove(wpid)
	proc, _ := sys.ProcessRegistry.Get(pid)
	proc.SendSystemMessage(pid, &actor.Watch{Watcher: wpid})

	senderDone := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(senderDone)
		sys.Root.Send(pid, &mbStopOnMsg{senderDone: senderDone})
		close(sent)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // hang guard only
	defer cancel()
	select {
	case <-w.done:
	case <-ctx.Done():
		t.Fatal("actor never stopped: Stopping ran on the goroutine it waits for")
	}
	<-sent
}

// mbPanicky panics on "boom"; the default supervisor restarts it.
type mbPanicky struct{}

func (a *mbPanicky) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case string:
		if m == "boom" {
			panic("boom")
		}
		ctx.Respond(m)
	}
}

func TestInlineMailboxPanicIsSupervised(t *testing.T) {
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &mbPanicky{} }, actor.WithMailbox(newInlineMailbox)))
	sys.Root.Send(pid, "boom") // runs inline on this goroutine: must not panic here
	r, err := AskAs[string](context.Background(), sys, pid, "after")
	if err != nil || r != "after" {
		t.Fatalf("got %q, %v; want the restarted actor to answer", r, err)
	}
}
