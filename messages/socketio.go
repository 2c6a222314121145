package messages

import (
	"encoding/json"
	"errors"
)

// SocketArg is one argument of a socket.io event or ack: Binary when it
// travels as a binary attachment (non-nil, possibly empty), JSON
// otherwise.
type SocketArg struct {
	JSON   json.RawMessage
	Binary []byte
}

// ErrServerDisconnect: the server ended the session on purpose (socket.io:
// the server called socket.disconnect()). As with the reference client the
// socket does not reconnect: it ends in SocketClosed with this error.
var ErrServerDisconnect = errors.New("pigeon: socket: the server ended the session (socket.io disconnect); not reconnecting")

// ErrAlreadyAcked: SocketEvent.Ack was called a second time (any listener
// of the event may answer, once).
var ErrAlreadyAcked = errors.New("pigeon: socket: the server's ack request was already answered")
