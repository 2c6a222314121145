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
	ch      chan messages.SocketEvent // written and closed only by the owning actor
	dropped atomic.Uint64

	mu    sync.Mutex
	sys   *actor.ActorSystem // owner; nil until adopted
	pid   *actor.PID
	err   error
	ended bool
}

// listenerIDs numbers listeners across every SocketConn and incarnation,
// so an Unlisten can never reach a listener it was not meant for.
var listenerIDs atomic.Uint64

// NewSocketListener returns a listener for event with a queue of size
// (0 means DefaultSocketListenerQueue) that no SocketConn owns yet: give it
// in SocketConfig.Listeners and the actor adopts it before it dials, so it
// sees everything from the first frame on. Closed before that, it ends at
// once with messages.ErrClosed.
func NewSocketListener(event string, size int) *SocketListener {
	if size <= 0 {
		size = DefaultSocketListenerQueue
	}
	ch := make(chan messages.SocketEvent, size)
	return &SocketListener{C: ch, ch: ch, id: listenerIDs.Add(1), event: event}
}

// sockAdopt makes the actor at pid the listener's owner; false when the
// listener already ended. Actor only.
func (l *SocketListener) sockAdopt(sys *actor.ActorSystem, pid *actor.PID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	l.sys, l.pid = sys, pid
	return true
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
	if l.ended {
		l.mu.Unlock()
		return nil
	}
	if l.pid == nil { // not adopted yet: nobody else writes to ch
		l.ended, l.err = true, messages.ErrClosed
		close(l.ch)
		l.mu.Unlock()
		return nil
	}
	sys, pid := l.sys, l.pid
	l.mu.Unlock()
	sys.Root.Send(pid, &messages.Unlisten{ID: l.id})
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
