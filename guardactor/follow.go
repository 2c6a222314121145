package guardactor

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// Follower forwards a stream of states (e.g. an auth-status stream) to a
// guard actor as *messages.GuardChanged, so that the actor re-evaluates its
// location on each change without polling. It owns one goroutine, which
// ends when the stream closes or Close is called. Safe for concurrent use.
type Follower struct {
	done     chan struct{}
	finished chan struct{}
	once     sync.Once
}

// Follow starts forwarding: every value v received from ch is sent to pid as
// GuardChanged{Guard: guard, Passes: passes(v)}. Consecutive equal results
// are sent once. Close the Follower to stop it; it also stops when ch is
// closed.
func Follow[T any](system *actor.ActorSystem, pid *actor.PID, guard string, ch <-chan T, passes func(T) bool) *Follower {
	f := &Follower{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(f.finished)
		sent, last := false, false
		for {
			select {
			case <-f.done:
				return
			case v, ok := <-ch:
				if !ok {
					return
				}
				p := passes(v)
				if sent && p == last {
					continue
				}
				sent, last = true, p
				system.Root.Send(pid, &messages.GuardChanged{Guard: guard, Passes: p})
			}
		}
	}()
	return f
}

// FollowBool is Follow for a stream of booleans (true = the guard passes).
func FollowBool(system *actor.ActorSystem, pid *actor.PID, guard string, ch <-chan bool) *Follower {
	return Follow(system, pid, guard, ch, func(b bool) bool { return b })
}

// Done is closed when the forwarding goroutine has ended.
func (f *Follower) Done() <-chan struct{} { return f.finished }

// Close stops forwarding and waits for the goroutine to end. Idempotent.
func (f *Follower) Close() error {
	f.once.Do(func() { close(f.done) })
	<-f.finished
	return nil
}
