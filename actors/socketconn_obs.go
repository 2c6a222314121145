package actors

import (
	"context"

	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/ws"
)

// SocketObserver watches a SocketConn for telemetry (pigeon's
// internal/obs.Obs is one). Implementations must be safe for concurrent
// use and must not block.
type SocketObserver interface {
	// StartConnect is called as a dial starts, off the mailbox; the dial
	// runs with the returned context and end is called with its error.
	StartConnect(ctx context.Context) (context.Context, func(err error))
	// Reconnect is called for every reconnect scheduled.
	Reconnect()
	// Dropped is called with the number of events a full listener queue
	// dropped.
	Dropped(n uint64)
}

// observedDial is ws.Dial under o's connect span, if any.
func observedDial(ctx context.Context, o SocketObserver, url string, cfg ws.DialConfig) (*websocket.Conn, error) {
	if o == nil {
		return ws.Dial(ctx, url, cfg)
	}
	ctx, end := o.StartConnect(ctx)
	conn, err := ws.Dial(ctx, url, cfg)
	end(err)
	return conn, err
}

// observeReconnect reports a scheduled reconnect. Actor only.
func (s *socketConn) observeReconnect() {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Reconnect()
	}
}

// offer gives ev to l under the configured overflow policy (see
// SocketListener.sockOffer) and reports the events it dropped. Actor only.
func (s *socketConn) offer(l *SocketListener, ev messages.SocketEvent) bool {
	if s.cfg.Observer == nil {
		return l.sockOffer(ev, s.cfg.Overflow)
	}
	before := l.Dropped()
	ok := l.sockOffer(ev, s.cfg.Overflow)
	if n := l.Dropped() - before; n > 0 {
		s.cfg.Observer.Dropped(n)
	}
	return ok
}
