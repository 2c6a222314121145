package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// ErrNoReply is returned by Ask when the target actor does not exist any more
// (the request became a dead letter). It wraps messages.ErrClosed, so callers
// that only care whether the runtime is gone can match that.
var ErrNoReply = fmt.Errorf("pigeon/actors: target actor is not running: %w", messages.ErrClosed)

// replyProcess is a one-shot process that receives the reply to one request.
// It replaces protoactor's Future, whose timeout path races with a late reply
// (protoactor-go issue #1145): here a late reply is simply dropped by a
// non-blocking send into a buffered channel that nobody reads any more.
type replyProcess struct {
	ch chan any // capacity 1: the first reply wins, later ones are dropped
}

func (p *replyProcess) SendUserMessage(_ *actor.PID, message any) {
	msg := actor.UnwrapEnvelopeMessage(message)
	select {
	case p.ch <- msg:
	default:
	}
}

func (p *replyProcess) SendSystemMessage(*actor.PID, any) {}
func (p *replyProcess) Stop(*actor.PID)                   {}

// Ask sends msg to pid with a reply address and waits for the first reply,
// for ctx to end, or for the target to turn out dead. It honours ctx
// cancellation and deadline exactly: on ctx end it returns ctx.Err() at once
// and a late reply is discarded.
//
// A reply that is an error value is returned as the error. Ask is safe for
// concurrent use.
func Ask(ctx context.Context, system *actor.ActorSystem, pid *actor.PID, msg any) (any, error) {
	return AskUntil(ctx, nil, system, pid, msg)
}

// AskUntil is Ask that also gives up with ErrNoReply once stop is closed
// (the target's owner knows it has stopped: a request queued behind an
// actor's stop gets no reply). A nil stop never closes. It costs no more
// than Ask.
func AskUntil(ctx context.Context, stop <-chan struct{}, system *actor.ActorSystem, pid *actor.PID, msg any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if pid == nil {
		return nil, ErrNoReply
	}
	p := &replyProcess{ch: make(chan any, 1)}
	replyPID, ok := system.ProcessRegistry.Add(p, "ask$"+system.ProcessRegistry.NextId())
	if !ok {
		return nil, errors.New("pigeon/actors: could not register reply process")
	}
	defer system.ProcessRegistry.Remove(replyPID)
	system.Root.RequestWithCustomSender(pid, msg, replyPID)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-stop:
		return nil, ErrNoReply
	case r := <-p.ch:
		switch r := r.(type) {
		case *actor.DeadLetterResponse:
			return nil, ErrNoReply
		case error:
			return nil, r
		default:
			return r, nil
		}
	}
}

// AskAs is Ask with the reply converted to the documented reply type T.
// A reply of any other type is an error naming both types.
func AskAs[T any](ctx context.Context, system *actor.ActorSystem, pid *actor.PID, msg any) (T, error) {
	return AskAsUntil[T](ctx, nil, system, pid, msg)
}

// AskAsUntil is AskUntil with the reply converted like AskAs.
func AskAsUntil[T any](ctx context.Context, stop <-chan struct{}, system *actor.ActorSystem, pid *actor.PID, msg any) (T, error) {
	var zero T
	r, err := AskUntil(ctx, stop, system, pid, msg)
	if err != nil {
		return zero, err
	}
	t, ok := r.(T)
	if !ok {
		return zero, fmt.Errorf("pigeon/actors: reply to %T is %T, want %T", msg, r, zero)
	}
	return t, nil
}
