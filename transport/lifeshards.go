package transport

import (
	"context"
	"sync"
	"sync/atomic"
)

// lifeShardCount is how many child contexts a lifetime's requests are
// spread over.
const lifeShardCount = 16

// lifeShards are child contexts of one lifetime (a client's Life). A
// request that runs under the lifetime runs under one of them, taken in
// turn: net/http derives a cancellable context from every request's, and
// registering each with the lifetime itself makes all concurrent requests
// of a client take one lock, twice per request (the mutex profile of 64
// callers showed it as the first contention of pigeon's own). Ending the
// lifetime ends every shard with its cause.
type lifeShards struct {
	next atomic.Uint32
	ctx  [lifeShardCount]context.Context
}

// shardsByLife holds the shards of every lifetime in use; an entry is
// removed (and its shards released) when its lifetime ends. It is a
// registry, not configuration: nothing replaces it.
var shardsByLife sync.Map // context.Context → *lifeShards

// lifeShard returns one of life's shards, creating them on first use.
func lifeShard(life context.Context) context.Context {
	v, ok := shardsByLife.Load(life)
	if !ok {
		s := &lifeShards{}
		var cancels [lifeShardCount]context.CancelCauseFunc
		// The shards carry their lifetime under shardKey, so a request
		// context made from one (Transport.Bind) is known to end with it.
		marked := context.WithValue(life, shardKey{}, life)
		for i := range s.ctx {
			s.ctx[i], cancels[i] = context.WithCancelCause(marked)
		}
		// release ends the shards with the lifetime's cause: it can run
		// (in the AfterFunc below) before the lifetime's own cancellation
		// has reached every shard, and must not end one with another.
		release := func() {
			for _, c := range cancels {
				c(context.Cause(life))
			}
		}
		if v, ok = shardsByLife.LoadOrStore(life, s); ok {
			release() // another request made them first
		} else {
			v = s
			context.AfterFunc(life, func() {
				shardsByLife.Delete(life)
				release()
			})
		}
	}
	s := v.(*lifeShards)
	return s.ctx[s.next.Add(1)%lifeShardCount]
}

// shardKey is the context key under which a lifetime's shards hold the
// lifetime itself.
type shardKey struct{}

// boundTo reports whether ctx ends when life does: it was made from one
// of life's shards (Bind) or has life's own Done channel (BindOnce).
func boundTo(ctx, life context.Context) bool {
	if d := ctx.Done(); d != nil && d == life.Done() {
		return true
	}
	return ctx.Value(shardKey{}) == life
}
