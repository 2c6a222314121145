package actors

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
)

// watchProcess receives the Terminated notification of one watched actor.
type watchProcess struct{ done chan struct{} }

func (w *watchProcess) SendUserMessage(*actor.PID, any) {}
func (w *watchProcess) SendSystemMessage(_ *actor.PID, m any) {
	if _, ok := m.(*actor.Terminated); ok {
		select {
		case <-w.done:
		default:
			close(w.done)
		}
	}
}
func (w *watchProcess) Stop(*actor.PID) {}

// StopAndWait stops pid and waits until it has terminated (its Stopping
// handler has run) or ctx ends. Unlike protoactor's StopFuture it needs no
// Future with a timeout (upstream race #1145). Stopping an actor that is
// already gone returns nil.
func StopAndWait(ctx context.Context, system *actor.ActorSystem, pid *actor.PID) error {
	if pid == nil {
		return nil
	}
	proc, ok := system.ProcessRegistry.Get(pid)
	if !ok {
		return nil
	}
	w := &watchProcess{done: make(chan struct{})}
	wpid, ok := system.ProcessRegistry.Add(w, "stop$"+system.ProcessRegistry.NextId())
	if !ok {
		return errors.New("pigeon/actors: could not register stop watcher")
	}
	defer system.ProcessRegistry.Remove(wpid)
	proc.SendSystemMessage(pid, &actor.Watch{Watcher: wpid})
	system.Root.Stop(pid)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
