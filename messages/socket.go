package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// SocketConn protocol. Requests are sent with actors.Ask to the PID spawned
// from actors.NewSocketConnProps; each documents its reply. An error reply
// is returned by Ask as its error. Messages are never mutated after sending.

// Position is a channel's stream position: the server's epoch and the last
// sequence number seen in it. The zero value means "nothing seen".
// (transport/wire.Position is the same type.)
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// SocketState is a SocketConn's lifecycle state.
type SocketState int

const (
	// SocketIdle: no connection and none wanted (lazy mode without
	// listeners, or after the last listener left).
	SocketIdle SocketState = iota
	// SocketConnecting: dialing, or the handshake (open/init) is under way.
	SocketConnecting
	// SocketConnected: the server accepted init (init_ack / socket.io
	// CONNECT); frames flow.
	SocketConnected
	// SocketReconnecting: the connection was lost; a reconnect is
	// scheduled after a backoff delay.
	SocketReconnecting
	// SocketFailed: a terminal error (see State.Err); no reconnect until
	// Connect is sent again.
	SocketFailed
	// SocketClosed: Disconnect was handled or the actor is stopping.
	// Terminal.
	SocketClosed
)

func (s SocketState) String() string {
	switch s {
	case SocketIdle:
		return "idle"
	case SocketConnecting:
		return "connecting"
	case SocketConnected:
		return "connected"
	case SocketReconnecting:
		return "reconnecting"
	case SocketFailed:
		return "failed"
	case SocketClosed:
		return "closed"
	}
	return fmt.Sprintf("SocketState(%d)", int(s))
}

// OverflowPolicy says what a listener's bounded queue does when it is full.
// The actor never blocks on a listener.
type OverflowPolicy int

const (
	// OverflowDropOldest (the zero value) discards the oldest queued event
	// to make room for the new one.
	OverflowDropOldest OverflowPolicy = iota
	// OverflowDropNewest discards the new event.
	OverflowDropNewest
	// OverflowClose ends the listener: Err reports ErrSlowConsumer and its
	// channel closes.
	OverflowClose
)

// SocketGapEvent is the Name of a gap event: after a reconnect the server
// could not replay what was missed on Channel (join ack recovered:false),
// so events between the last one seen and the next one are lost.
const SocketGapEvent = "pigeon:gap"

// SocketEvent is one event delivered to a listener. Values are never
// mutated after delivery; Data is not shared with anything else.
type SocketEvent struct {
	// Name is the event name; SocketGapEvent for a gap event.
	Name string
	// Channel is the channel the event came from ("" when the protocol has
	// no channels, as with socket.io).
	Channel string
	// Position is the event's stream position (zero for socket.io); for a
	// gap event, the position the stream resumes from.
	Position Position
	// Data is the event's JSON payload (socket.io: the first argument, or
	// an array of all of them when there are several).
	Data json.RawMessage
	// Gap marks a gap event.
	Gap bool
	// Args are the event's arguments one by one (socket.io; nil for
	// pigeon.v1): a binary attachment has Binary set (in Data it is a
	// base64 JSON string).
	Args []SocketArg
	// Ack answers the server's ack request (socket.io `emit` with a
	// callback); nil when the server asked for none. Each argument is a
	// []byte (sent as a binary attachment), a json.RawMessage, or any value
	// encoding/json takes. The first call sends the ack (every listener of
	// the event shares it); later calls return ErrAlreadyAcked. Nothing is
	// sent when no listener calls it, as with the reference client. Safe
	// for concurrent use.
	Ack func(args ...any) error
}

// Connect asks the SocketConn to connect now and stay connected until
// Disconnect (eager mode; in lazy mode it pins the connection open). From
// SocketFailed it clears the error and starts over. Reply: *Connected once
// the server accepted init and, with a JoinID, acknowledged the join (at
// once if that is already so), or an error: why the next connection
// attempt failed (the dial error, a *ws.HandshakeError with the HTTP
// status, a lost or timed-out handshake; the actor keeps retrying in the
// background), the terminal error (a *SocketRejectedError, a rejected
// join's *SocketServerError with its code and message, a *PanicError), or
// ErrClosed after Disconnect.
type Connect struct{}

// Connected is the reply to Connect.
type Connected struct {
	// Session is the server's session id (pigeon.v1 init_ack session,
	// socket.io sid).
	Session string
}

// Disconnect ends the connection for good: close 1000, every listener's
// channel closes with Err, pending acks and buffered emits fail with Err,
// later requests fail with ErrClosed. Idempotent. Reply: *Disconnected,
// always.
type Disconnect struct {
	// Err is what listeners and pending requests are told. Zero value
	// means ErrClosed.
	Err error
}

// Disconnected is the reply to Disconnect.
type Disconnected struct{}

// UpdateHeaders replaces the connection's headers (a refreshed token).
// While connected one `update` is sent on the live connection; otherwise
// the headers are cached and the next init carries them. Headers is not
// retained by the sender after sending. Reply: *HeadersUpdated at once, or
// ErrClosed.
type UpdateHeaders struct {
	Headers http.Header
}

// HeadersUpdated is the reply to UpdateHeaders.
type HeadersUpdated struct {
	// Sent reports whether an update frame went out on a live connection
	// (false: cached for the next init).
	Sent bool
}

// Listen subscribes to every event named Event on the connection ("" means
// every event). In lazy mode the first listener makes the SocketConn dial.
// Reply: *actors.SocketListener (see package actors) whose C delivers
// SocketEvent values, or an error: the terminal error in SocketFailed,
// ErrClosed after Disconnect.
type Listen struct {
	Event string
}

// Unlisten ends the listener with ID (its channel closes; its Err is
// ErrClosed). Unknown IDs are ignored. When the last listener leaves in
// lazy mode the SocketConn sends `leave` and closes 1000 after its linger.
// Reply: *Unlistened (also sent without a reply address by
// SocketListener.Close).
type Unlisten struct {
	ID uint64
}

// Unlistened is the reply to Unlisten.
type Unlistened struct{}

// Emit sends an event. Channel "" means the configured JoinID (pigeon.v1;
// socket.io has no channels). Data is JSON (nil: none). While
// disconnected the emit is buffered within the configured count and byte
// bounds (overflow: ErrBufferFull at once) and, in lazy mode, the
// SocketConn dials. On pigeon.v1 (and socket.io with EmitRetries) an emit
// is kept, within the same bounds, until the server acks it and written
// again after a reconnect (pigeon.v1 with an emitId the server dedupes:
// exactly once); one given up on after its reply is counted in
// SocketStatus.EmitsDropped. Reply:
//   - WantAck false: *EmitResult{} once the frame is queued for writing or
//     buffered;
//   - WantAck true: *EmitResult{Ack} with the server's ack payload, or
//     *SocketServerError when the server answered with an error, or
//     ErrAckTimeout when no answer came within the ack timeout (counted from
//     the Emit, so buffered emits time out too);
//   - ErrBufferFull, ErrClosed, or the terminal error.
type Emit struct {
	Event   string
	Channel string
	Data    json.RawMessage
	WantAck bool
	// Args, when non-nil, are the event's arguments in place of Data
	// (socket.io only: several arguments, Binary ones as binary
	// attachments; pigeon.v1 refuses them).
	Args []SocketArg
}

// EmitResult is the reply to Emit.
type EmitResult struct {
	// Ack is the server's ack payload (WantAck only): pigeon.v1 the ack's
	// payload object, socket.io the first ack argument or an array of all.
	Ack json.RawMessage
}

// GetState asks for a snapshot of the SocketConn (tests, diagnostics).
// Reply: *State.
type GetState struct{}

// State is the reply to GetState. Maps are copies.
type State struct {
	State SocketState
	// Err is the terminal error in SocketFailed.
	Err error
	// Generation is the connection generation: it grows on every dial and
	// every teardown, so replies and timers of an older connection are
	// recognised as stale.
	Generation uint64
	// Attempt is the reconnect attempt counter (reset once a connection
	// has stayed up SocketConfig.StableAfter).
	Attempt   int
	Session   string
	Listeners int
	// Buffered is the number of emits not yet written on the live
	// connection (all of them while disconnected).
	Buffered int
	// PendingAcks is the number of requests waiting for a server reply.
	PendingAcks int
	// Dropped is the total number of events dropped by listener queues.
	Dropped uint64
	// Duplicates is the number of events dropped as already seen.
	Duplicates uint64
	// Unacked is the number of emits written and kept until the server
	// acks them (pigeon.v1; socket.io with EmitRetries).
	Unacked int
	// EmitsDropped is SocketStatus.EmitsDropped; EmitsResent counts emits
	// written again (after a reconnect, or a socket.io retry).
	EmitsDropped, EmitsResent uint64
	// Positions is the last stream position seen per channel.
	Positions map[string]Position
	// LastErr is why the last connection attempt failed or the last
	// connection was lost (nil once connected).
	LastErr error
	// Step is what a connection in progress waits for ("dialing",
	// "handshake", "joining <channel>", "waiting to reconnect"); "" when
	// none is in progress.
	Step string
}

// ErrAckTimeout: the server did not answer a request within the ack
// timeout.
var ErrAckTimeout = errors.New("pigeon: socket ack timeout")

// ErrReconnectExhausted: the maximum number of reconnect attempts was
// reached. Terminal; the error wraps the last cause too.
var ErrReconnectExhausted = errors.New("pigeon: socket reconnect attempts exhausted")

// SocketCloseError: the connection closed with a terminal close code
// (4500–4999, or a frame error pigeon closed with 4502/1009).
type SocketCloseError struct {
	Code   int
	Reason string
	// Err is the underlying cause when pigeon closed the connection (a
	// *wire.DecodeError, websocket.ErrReadLimit); nil when the server did.
	Err error
}

func (e *SocketCloseError) Error() string {
	s := fmt.Sprintf("pigeon: socket closed with %d", e.Code)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SocketCloseError) Unwrap() error { return e.Err }

// SocketServerError is an error frame from the server (pigeon.v1 `error`,
// socket.io CONNECT_ERROR).
type SocketServerError struct {
	Code      string
	Message   string
	Retryable bool
}

func (e *SocketServerError) Error() string {
	return fmt.Sprintf("pigeon: socket server error %s: %s", e.Code, e.Message)
}

// SocketRejectedError: the server rejected the connection's credentials
// twice in a row (close 4003, init rejected, or a 401/403 handshake), even
// after fresh headers were fetched. Terminal. Err is the last rejection.
type SocketRejectedError struct{ Err error }

func (e *SocketRejectedError) Error() string {
	return "pigeon: socket credentials rejected: " + e.Err.Error()
}

func (e *SocketRejectedError) Unwrap() error { return e.Err }

// A Connect or Disconnect may reach a SocketConn its owner has just
// stopped (a LogOut racing SocketInit); the asker learns it from the
// actor's end, so the dead letter is expected.
func (*Connect) IgnoreDeadLetterLogging()    {}
func (*Disconnect) IgnoreDeadLetterLogging() {}

// Replies may reach an asker that gave up; such dead letters are expected.
func (*Connected) IgnoreDeadLetterLogging()      {}
func (*Disconnected) IgnoreDeadLetterLogging()   {}
func (*HeadersUpdated) IgnoreDeadLetterLogging() {}
func (*Unlistened) IgnoreDeadLetterLogging()     {}
func (*Unlisten) IgnoreDeadLetterLogging()       {}
func (*EmitResult) IgnoreDeadLetterLogging()     {}
func (*State) IgnoreDeadLetterLogging()          {}
