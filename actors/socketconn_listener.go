package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// SocketListener is the reply to messages.Listen: a subscription to one
// event name on a SocketConn. Receive from C; C is closed when the
// subscription ends, and Err then says why (messages.ErrClosed after Close,
// Unlisten or Disconnect; messages.ErrSlowConsumer under the close
// overflow policy; the terminal error otherwise). Methods are safe for
// concurrent use.
type SocketListener struct {
	// C delivers the events. Its capacity is the configured listener queue
	// size; when it is full the configured overflow policy applies.
	C <-chan messages.SocketEvent

	id      uint64
	event   string
	ch      chan messages.SocketEvent // written and closed only by the actor
	sys     *actor.ActorSystem
	pid     *actor.PID
	dropped atomic.Uint64

	mu    sync.Mutex
	err   error
	ended bool
}

// ID identifies the listener in messages.Unlisten.
func (l *SocketListener) ID() uint64 { return l.id }

// Event is the event name listened to ("" = every event).
func (l *SocketListener) Event() string { return l.event }

// Err returns why C was closed, or nil while it is open.
func (l *SocketListener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Dropped returns how many events this listener's queue dropped.
func (l *SocketListener) Dropped() uint64 { return l.dropped.Load() }

// Close asks the SocketConn to end the listener (messages.Unlisten) and
// returns at once; C closes shortly after. Idempotent; always nil.
func (l *SocketListener) Close() error {
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	if !ended {
		l.sys.Root.Send(l.pid, &messages.Unlisten{ID: l.id})
	}
	return nil
}

// sockEnd records err and closes the channel. Actor only; idempotent.
func (l *SocketListener) sockEnd(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	l.err = err
	close(l.ch)
}

// sockOffer delivers ev under policy without blocking. It reports false
// when the listener must be ended with ErrSlowConsumer. Actor only.
func (l *SocketListener) sockOffer(ev messages.SocketEvent, policy messages.OverflowPolicy) bool {
	select {
	case l.ch <- ev:
		return true
	default:
	}
	switch policy {
	case messages.OverflowDropNewest:
		l.dropped.Add(1)
		return true
	case messages.OverflowClose:
		l.dropped.Add(1)
		return false
	default: // drop oldest
		select {
		case <-l.ch:
			l.dropped.Add(1)
		default: // the consumer emptied it meanwhile
		}
		select {
		case l.ch <- ev:
		default: // only the actor sends, so this cannot happen; count it anyway
			l.dropped.Add(1)
		}
		return true
	}
}
