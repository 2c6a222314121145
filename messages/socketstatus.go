package messages

import "time"

// SocketStatus is one entry of a socket's state stream (see
// actors.SocketStatusFeed): the state it moved to and what goes with it.
// Values are never mutated after delivery.
type SocketStatus struct {
	// State is never SocketFailed: a terminal failure is SocketClosed with
	// Err set.
	State SocketState
	// Attempt is the reconnect attempt: on SocketReconnecting the one
	// waiting for Delay (1 for the first retry), on SocketConnecting the
	// retry under way (0 for a first connection). Zero otherwise.
	Attempt int
	// Delay is the wait before the next attempt (SocketReconnecting only).
	Delay time.Duration
	// Recovered reports, on SocketConnected after a lost connection, that
	// the server resumed the joined channel from the last position seen
	// (nothing was missed). False on a first connection, after a gap, and
	// on protocols without positions (socket.io).
	Recovered bool
	// Err is the cause: on SocketReconnecting why the connection or the
	// attempt ended; on SocketClosed why the socket ended (ErrClosed after
	// Disconnect, an error matching ErrReconnectExhausted when the
	// attempts ran out, the terminal error otherwise). Nil otherwise.
	Err error
	// EmitsDropped counts, so far on this socket, the emits pigeon gave up
	// on after Emit had returned nil: the server refused them, socket.io
	// ran out of retries, or the socket ended before the server acked them
	// (the final SocketClosed counts those too). A failed EmitWithAck
	// returns its error instead and is not counted.
	EmitsDropped uint64
}
