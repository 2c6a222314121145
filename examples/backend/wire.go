package backend

import "encoding/json"

// Subprotocol is the websocket sub-protocol the Backend speaks at /ws.
const Subprotocol = "pigeon.v1"

// Frame types of pigeon.v1.
const (
	TypeInit    = "init"
	TypeInitAck = "init_ack"
	TypeUpdate  = "update"
	TypeJoin    = "join"
	TypeLeave   = "leave"
	TypeEmit    = "emit"
	TypePing    = "ping"
	TypePong    = "pong"
	TypeAck     = "ack"
	TypeEvent   = "event"
	TypeError   = "error"
)

// Close codes the Backend sends.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001
	CloseAbnormal      = 1006 // never sent; counted in Stats.Closes for connections that ended without a close frame
	CloseTooBig        = 1009
	CloseIdle          = 4000 // no client frame for ping interval + grace
	CloseSlowConsumer  = 4001
	CloseInitTimeout   = 4002
	CloseTokenExpired  = 4003
	CloseServerRestart = 4004 // only sent by CloseAllSockets
	CloseUnauthorized  = 4501
	CloseBadMessage    = 4502
	CloseDuplicateID   = 4503
)

// Error codes of `error` frames.
const (
	ErrCodeUnauthorized = "unauthorized"
	ErrCodeForbidden    = "forbidden"
	ErrCodeBadRequest   = "bad_request"
)

// UniversalChannel is the chat room shared by users and ghosts.
const UniversalChannel = "chat:universal"

// inFrame is a client frame.
type inFrame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// outFrame is a server frame.
type outFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Payload any    `json:"payload,omitempty"`
}

type headersPayload struct {
	Headers map[string]string `json:"headers"`
}

// Position is a place in a room's event stream: the room's epoch and the
// sequence number of an event in it.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

type joinPayload struct {
	Channel string    `json:"channel"`
	Since   *Position `json:"since,omitempty"`
}

type leavePayload struct {
	Channel string `json:"channel"`
}

type emitPayload struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data,omitempty"`
	// EmitID names the emit across connections: a copy resent after a
	// reconnect is acknowledged again (duplicate: true) but not published
	// twice (see WithEmitDedupeWindow). "" means no deduplication.
	EmitID string `json:"emitId,omitempty"`
}

type pingPayload struct {
	T json.RawMessage `json:"t,omitempty"`
}

type initAckPayload struct {
	Session        string `json:"session"`
	PingIntervalMs int64  `json:"pingIntervalMs"`
	MaxFrame       int64  `json:"maxFrame"`
}

type updateAckPayload struct {
	Session string   `json:"session"`
	Left    []string `json:"left,omitempty"` // rooms the new identity may not be in, left by the update
}

type joinAckPayload struct {
	Channel   string `json:"channel"`
	Epoch     string `json:"epoch"`
	Seq       uint64 `json:"seq"`
	Recovered bool   `json:"recovered"`
}

type emitAckPayload struct {
	Channel   string `json:"channel"`
	Epoch     string `json:"epoch"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"` // an emitId seen before: the first copy's position
}

type leaveAckPayload struct {
	Channel string `json:"channel"`
}

type eventPayload struct {
	Channel string          `json:"channel"`
	Event   string          `json:"event"`
	Epoch   string          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	Data    json.RawMessage `json:"data"`
}

type errorPayload struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

func encodeFrame(f outFrame) []byte {
	data, err := json.Marshal(f)
	if err != nil { // only for payloads that cannot be encoded; ours always can
		data, _ = json.Marshal(outFrame{Type: TypeError, ID: f.ID, Payload: errorPayload{Code: "internal", Message: "cannot encode frame"}})
	}
	return data
}
