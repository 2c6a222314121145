package etcdtest

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// TokenEvents subscribes to the token changes of the AuthStore at
// authStore (SubscribeAuth with Tokens) and returns them on a channel of
// capacity 1024 (a change that finds it full is dropped), first one per
// stored account. stop unsubscribes and stops the forwarding actor; call
// it before the client closes.
func TokenEvents(sys *actor.ActorSystem, authStore *actor.PID) (events <-chan messages.TokensChanged, stop func(), err error) {
	ch := make(chan messages.TokensChanged, 1024)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*messages.TokensChanged); ok {
			select {
			case ch <- *m:
			default:
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := actors.AskAs[*messages.AuthSubscription](ctx, sys, authStore, &messages.SubscribeAuth{PID: pid, Tokens: true})
	if err != nil {
		_ = sys.Root.StopFuture(pid).Wait()
		return nil, nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = actors.AskAs[*messages.Unsubscribed](ctx, sys, authStore, &messages.UnsubscribeAuth{ID: sub.ID})
		_ = actors.StopAndWait(ctx, sys, pid)
	}
	return ch, stop, nil
}
