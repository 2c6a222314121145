package wire

import (
	"encoding/json"
	"github.com/apppigeon/pigeon/messages"
	"net/http"
)

// MessageType is the websocket frame type (gorilla's TextMessage = 1,
// BinaryMessage = 2).
type MessageType int

const (
	// TextMessage is a UTF-8 text frame.
	TextMessage MessageType = 1
	// BinaryMessage is a binary frame.
	BinaryMessage MessageType = 2
)

// Frame is one websocket data frame.
type Frame struct {
	Type MessageType
	Data []byte
}

// Position is a channel's stream position: the server's epoch and the last
// sequence number seen in it. The zero value means "nothing seen".
type Position = messages.Position

// Op is a client-level operation to encode. Exactly one of the concrete
// types below.
type Op interface{ isOp() }

// Init opens the session with the connection's headers (pigeon.v1 `init`;
// socket.io `40` CONNECT with an auth payload built from the headers).
type Init struct {
	ID      string
	Headers http.Header
	// PID and Offset resume a socket.io session (connection state
	// recovery): the pid of the last session and the offset of the last
	// event seen, sent beside the auth payload. "" = a fresh session.
	// pigeon.v1 ignores them.
	PID, Offset string
}

// Update replaces the headers on the live connection (pigeon.v1 `update`;
// socket.io: an "update" event carrying the auth payload).
type Update struct {
	ID      string
	Headers http.Header
}

// Join subscribes to a channel, resuming after Since when it is non-zero.
type Join struct {
	ID      string
	Channel string
	Since   Position
}

// Leave unsubscribes from a channel.
type Leave struct {
	ID      string
	Channel string
}

// Emit sends an event. ID non-empty asks for an ack. Key, when set, names
// the emit across connections so that a server can drop a copy resent
// after a reconnect (pigeon.v1 payload `emitId`; socket.io has no such
// field and reuses the ack ID instead).
type Emit struct {
	ID      string
	Event   string
	Channel string
	Data    json.RawMessage
	Key     string
	// Args, when non-nil, are the event's arguments in place of Data
	// (socket.io: several arguments, binary ones as attachments).
	Args []Arg
}

// Ping is a client keep-alive (pigeon.v1 `ping`).
type Ping struct{ T int64 }

// Pong answers a server ping (Engine.IO `3`).
type Pong struct{}

// EventAck answers a server Event that asked for an ack (socket.io
// `43<id>[...]`). Data is the JSON array of ack arguments; nil sends `[]`.
// pigeon.v1 has no server-side acks and encodes nothing for it.
type EventAck struct {
	ID   string
	Data json.RawMessage
	// Args, when non-nil, are the ack's arguments in place of Data
	// (binary ones as attachments).
	Args []Arg
}

func (Init) isOp()     {}
func (Update) isOp()   {}
func (Join) isOp()     {}
func (Leave) isOp()    {}
func (Emit) isOp()     {}
func (Ping) isOp()     {}
func (Pong) isOp()     {}
func (EventAck) isOp() {}

// Msg is a decoded server frame. Exactly one of the concrete types below.
type Msg interface{ isMsg() }

// Open is the transport-level greeting that precedes the session
// (Engine.IO `0{...}` open packet). pigeon.v1 has none.
type Open struct {
	SID          string
	PingInterval int64 // ms
	PingTimeout  int64 // ms
	MaxPayload   int64
}

// InitAck accepts Init (pigeon.v1 `init_ack`; socket.io `40{"sid":...}`).
type InitAck struct {
	ID             string
	Session        string
	PingIntervalMs int64
	MaxFrame       int64
	// PID is socket.io's private session id, present when the server
	// keeps sessions for connection state recovery ("" otherwise).
	PID string
}

// Ack answers a request frame (join, update, leave, emit).
type Ack struct {
	ID        string
	Channel   string
	Position  Position
	Recovered bool
	// Data is pigeon.v1's raw ack payload; for socket.io the ack's first
	// argument, or a JSON array of all of them when there are several
	// (null when there are none).
	Data json.RawMessage
}

// Event is an event pushed by the server.
type Event struct {
	Channel  string
	Event    string
	Position Position // zero when the protocol has no positions (socket.io)
	// Data is pigeon.v1's payload.data; for socket.io the event's first
	// argument, or a JSON array of all of them when there are several
	// (null when there are none).
	Data  json.RawMessage
	AckID string // socket.io: the server asks for an ack with this id; "" = none
	// Args are socket.io's arguments one by one (binary attachments as
	// Binary); nil for pigeon.v1.
	Args []Arg
}

// Error is a server error, answering ID when non-empty.
type Error struct {
	ID        string
	Code      string
	Message   string
	Retryable bool
	// NotCredentials: the server refused the session for a reason other
	// than the credentials (socket.io: a connect middleware error that is
	// no authentication error), so fresh credentials would not help.
	// pigeon.v1 never sets it.
	NotCredentials bool
}

// ServerPing must be answered with Pong (Engine.IO `2`).
type ServerPing struct{}

// ServerPong answers a client Ping.
type ServerPong struct{ T int64 }

// Disconnect is a server-initiated session end inside a live transport
// (socket.io `41`, or Engine.IO `1` close).
type Disconnect struct {
	Reason string
	// Final: the server ended the session on purpose (socket.io `41`,
	// the server's socket.disconnect()); the client does not reconnect.
	Final bool
}

func (Open) isMsg()       {}
func (InitAck) isMsg()    {}
func (Ack) isMsg()        {}
func (Event) isMsg()      {}
func (Error) isMsg()      {}
func (ServerPing) isMsg() {}
func (ServerPong) isMsg() {}
func (Disconnect) isMsg() {}

// Codec translates between operations and frames for one protocol.
type Codec interface {
	// Name is "pigeon.v1" or "socket.io".
	Name() string
	// Subprotocols to offer in the websocket handshake (nil for none).
	Subprotocols() []string
	// DialURL returns the URL to dial for the connect URL a user gave
	// (socket.io adds EIO=4&transport=websocket and maps http(s) to ws(s)).
	DialURL(connectURL string) (string, error)
	// Encode turns one operation into zero or more frames.
	Encode(op Op) ([]Frame, error)
	// Decode turns one received frame into zero or more messages. Any
	// malformed input is an error of type *DecodeError; Decode never panics.
	Decode(f Frame) ([]Msg, error)
	// ExpectsReply reports whether the server answers op with an Ack (or
	// InitAck) or an Error carrying op's ID. A client arms an ack timer
	// only for such ops. pigeon.v1 answers every op with an ID except
	// Ping; socket.io answers Init and Emits with an ID.
	ExpectsReply(op Op) bool
	// ServerSpeaksFirst reports whether the server opens the session with
	// an Open message that the client must wait for before it sends Init
	// (Engine.IO's open packet). false: the client sends Init as soon as
	// the websocket is up (pigeon.v1).
	ServerSpeaksFirst() bool
	// CloseClass says what a close code the server ended the connection
	// with means for the client: reconnect, fetch fresh credentials first,
	// or stop.
	CloseClass(code int) CloseClass
	// DedupesEmits reports whether an Emit's Key is an id the server
	// dedupes and every emit is acked, so a client keeps each emit until
	// its ack and writes it again after a reconnect with the same Key:
	// exactly once (pigeon.v1's emitId). false: a resent emit may arrive
	// twice (socket.io, at least once with retries).
	DedupesEmits() bool
}

// CloseClass is what a close code means for the client.
type CloseClass int

const (
	// CloseRetry (the zero value): reconnect with backoff (1001, 1006,
	// 4000–4499 except 4003, and any code the protocol does not name).
	CloseRetry CloseClass = iota
	// CloseRefresh: the server refused the credentials (4003 token
	// expired); fetch fresh headers, then reconnect.
	CloseRefresh
	// CloseTerminal: do not reconnect (4500–4999).
	CloseTerminal
)

// Close codes pigeon itself closes with.
const (
	// CloseBadMessage: the client could not decode a server frame (4502).
	CloseBadMessage = 4502
)

// closeClassV1 classifies the close codes of pigeon.v1 (socket.md):
// 4003 refresh, 4500–4999 terminal, everything else worth a reconnect.
func closeClassV1(code int) CloseClass {
	switch {
	case code == 4003:
		return CloseRefresh
	case code >= 4500 && code <= 4999:
		return CloseTerminal
	}
	return CloseRetry
}

// DecodeError is returned by Decode for a malformed frame.
type DecodeError struct {
	Codec  string
	Reason string
	Err    error
}

func (e *DecodeError) Error() string {
	s := "pigeon/wire: " + e.Codec + ": malformed frame: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *DecodeError) Unwrap() error { return e.Err }
