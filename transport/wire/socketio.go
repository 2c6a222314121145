package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// SocketIOName is the socket.io codec's Name.
const SocketIOName = "socket.io"

// AuthPayloadFunc builds the socket.io CONNECT auth payload (and the
// "update" event's argument) from the connection's headers. It must return
// a JSON object.
type AuthPayloadFunc func(h http.Header) (json.RawMessage, error)

// SocketIOOption configures SocketIO.
type SocketIOOption interface{ apply(*socketIO) }

type sioOptionFunc func(*socketIO)

func (f sioOptionFunc) apply(s *socketIO) { f(s) }

// WithNamespace sets the socket.io namespace ("/chat"). Zero value (option
// not given) means the main namespace "/". A namespace without a leading
// slash gets one.
func WithNamespace(ns string) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if ns == "" {
			ns = "/"
		}
		if !strings.HasPrefix(ns, "/") {
			ns = "/" + ns
		}
		s.nsp = ns
	})
}

// WithJoinEvent sets the event emitted with the channel id as its argument
// to join a channel. Zero value (option not given) means "join".
func WithJoinEvent(name string) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if name != "" {
			s.joinEvent = name
		}
	})
}

// WithLeaveEvent sets the event emitted to leave a channel. Zero value
// (option not given) means "leave".
func WithLeaveEvent(name string) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if name != "" {
			s.leaveEvent = name
		}
	})
}

// WithUpdateEvent sets the event emitted with the auth payload when the
// headers change on a live connection. Zero value (option not given) means
// "update".
func WithUpdateEvent(name string) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if name != "" {
			s.updateEvent = name
		}
	})
}

// WithAuthPayload replaces the auth payload builder. A nil f keeps the
// default, DefaultAuthPayload.
func WithAuthPayload(f AuthPayloadFunc) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if f != nil {
			s.auth = f
		}
	})
}

// DefaultAuthPayload builds {"token":"<Authorization without its Bearer
// prefix>"}, or {} when there is no Authorization header: the auth payload
// carries the token only, never the other default headers (they went with
// the handshake request). WithAuthPayload sends more.
func DefaultAuthPayload(h http.Header) (json.RawMessage, error) {
	type auth struct {
		Token string `json:"token,omitempty"`
	}
	var a auth
	if v := h.Get("Authorization"); v != "" {
		a.Token = v
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			a.Token = strings.TrimSpace(v[7:])
		}
	}
	return json.Marshal(a)
}

// SocketIO returns the socket.io v4 codec (Engine.IO v4, websocket transport
// only, no binary attachments). The codec is immutable and safe for
// concurrent use.
//
// Event and ack arguments: Event.Data and Ack.Data carry the first
// argument when there is exactly one, a JSON array of all arguments when
// there are several, and null when there are none.
func SocketIO(opts ...SocketIOOption) Codec {
	s := &socketIO{nsp: "/", joinEvent: "join", leaveEvent: "leave", updateEvent: "update", auth: DefaultAuthPayload}
	for _, o := range opts {
		if o != nil {
			o.apply(s)
		}
	}
	return s
}

type socketIO struct {
	nsp         string
	joinEvent   string
	leaveEvent  string
	updateEvent string
	auth        AuthPayloadFunc
}

var _ Codec = (*socketIO)(nil)

func (*socketIO) Name() string           { return SocketIOName }
func (*socketIO) Subprotocols() []string { return nil }

// ServerSpeaksFirst is true: Engine.IO's open packet precedes CONNECT.
func (*socketIO) ServerSpeaksFirst() bool { return true }

// CloseClass: socket.io servers end with 1000/1001/1006 (retry); a
// gateway in front of one may use pigeon.v1's 4xxx classes, which are
// honoured the same way.
func (*socketIO) CloseClass(code int) CloseClass { return closeClassV1(code) }

// DialURL maps http(s) to ws(s); a path without "/socket.io" gets
// "/socket.io/" appended (so a proxy prefix "/api" dials
// "/api/socket.io/"); the query gets EIO=4 and transport=websocket, other
// query parameters are kept.
func (*socketIO) DialURL(connectURL string) (string, error) {
	u, err := parseWSURL(SocketIOName, connectURL)
	if err != nil {
		return "", err
	}
	if !strings.Contains(u.Path, "/socket.io") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/socket.io/"
		u.RawPath = ""
	}
	q := u.Query()
	q.Set("EIO", "4")
	q.Set("transport", "websocket")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// prefix returns "4<t>" plus the namespace prefix and the ack id.
func (s *socketIO) prefix(t byte, id string) ([]byte, error) {
	b := []byte{'4', t}
	if s.nsp != "/" {
		b = append(b, s.nsp...)
		b = append(b, ',')
	}
	if id != "" {
		if _, err := strconv.ParseUint(id, 10, 63); err != nil {
			return nil, fmt.Errorf("pigeon/wire: socket.io: ack id %q is not a decimal number", id)
		}
		b = append(b, id...)
	}
	return b, nil
}

func (s *socketIO) event(id string, args ...any) ([]Frame, error) {
	b, err := s.prefix('2', id)
	if err != nil {
		return nil, err
	}
	arr, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("pigeon/wire: socket.io: encode event: %w", err)
	}
	return []Frame{{Type: TextMessage, Data: append(b, arr...)}}, nil
}

func (s *socketIO) authPayload(h http.Header) (json.RawMessage, error) {
	p, err := s.auth(h)
	if err != nil {
		return nil, fmt.Errorf("pigeon/wire: socket.io: auth payload: %w", err)
	}
	if t := bytes.TrimSpace(p); len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return nil, errors.New("pigeon/wire: socket.io: auth payload is not a JSON object")
	}
	return p, nil
}

func (s *socketIO) Encode(op Op) ([]Frame, error) {
	switch op := op.(type) {
	case Init:
		p, err := s.authPayload(op.Headers)
		if err != nil {
			return nil, err
		}
		b, _ := s.prefix('0', "")
		return []Frame{{Type: TextMessage, Data: append(b, p...)}}, nil
	case Update:
		p, err := s.authPayload(op.Headers)
		if err != nil {
			return nil, err
		}
		return s.event("", s.updateEvent, p)
	case Join:
		return s.event("", s.joinEvent, op.Channel)
	case Leave:
		return s.event("", s.leaveEvent, op.Channel)
	case Emit:
		if op.Event == "" {
			return nil, errors.New("pigeon/wire: socket.io: emit without an event name")
		}
		if op.Data == nil {
			return s.event(op.ID, op.Event)
		}
		if !json.Valid(op.Data) {
			return nil, errors.New("pigeon/wire: socket.io: emit data is not valid JSON")
		}
		return s.event(op.ID, op.Event, op.Data)
	case EventAck:
		b, err := s.prefix('3', op.ID)
		if err != nil {
			return nil, err
		}
		if op.ID == "" {
			return nil, errors.New("pigeon/wire: socket.io: event ack without id")
		}
		data := op.Data
		if data == nil {
			data = json.RawMessage("[]")
		}
		if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '[' || !json.Valid(t) {
			return nil, errors.New("pigeon/wire: socket.io: event ack data is not a JSON array")
		}
		return []Frame{{Type: TextMessage, Data: append(b, data...)}}, nil
	case Pong:
		return []Frame{{Type: TextMessage, Data: []byte("3")}}, nil
	case Ping:
		return nil, nil // Engine.IO v4: the server pings, the client answers
	case nil:
		return nil, errors.New("pigeon/wire: socket.io: nil op")
	default:
		return nil, fmt.Errorf("pigeon/wire: socket.io: unsupported op %T", op)
	}
}

func (*socketIO) ExpectsReply(op Op) bool {
	switch op := op.(type) {
	case Init:
		return true
	case Emit:
		return op.ID != ""
	}
	return false
}

func sioErr(reason string, err error) error {
	return &DecodeError{Codec: SocketIOName, Reason: reason, Err: err}
}

type eioOpen struct {
	SID          string `json:"sid"`
	PingInterval int64  `json:"pingInterval"`
	PingTimeout  int64  `json:"pingTimeout"`
	MaxPayload   int64  `json:"maxPayload"`
}

func (s *socketIO) Decode(f Frame) ([]Msg, error) {
	if f.Type != TextMessage {
		return nil, sioErr("binary attachments not supported", nil)
	}
	d := f.Data
	if len(d) == 0 {
		return nil, sioErr("empty Engine.IO packet", nil)
	}
	switch d[0] {
	case '0':
		var o eioOpen
		if err := json.Unmarshal(d[1:], &o); err != nil {
			return nil, sioErr("Engine.IO open packet", err)
		}
		if o.PingInterval < 0 || o.PingTimeout < 0 || o.MaxPayload < 0 {
			return nil, sioErr("Engine.IO open packet: negative value", nil)
		}
		return []Msg{Open(o)}, nil
	case '1':
		return []Msg{Disconnect{Reason: "engine.io close"}}, nil
	case '2':
		return []Msg{ServerPing{}}, nil
	case '3':
		return []Msg{ServerPong{}}, nil
	case '4':
		return s.decodePacket(d[1:])
	case '5', '6':
		return nil, nil // upgrade / noop: nothing to do on a websocket-only transport
	default:
		return nil, sioErr(fmt.Sprintf("unknown Engine.IO packet type %q", d[0]), nil)
	}
}

// decodePacket decodes one socket.io packet (the Engine.IO message body).
func (s *socketIO) decodePacket(p []byte) ([]Msg, error) {
	if len(p) == 0 {
		return nil, sioErr("empty socket.io packet", nil)
	}
	t := p[0]
	rest := p[1:]
	if t == '5' || t == '6' {
		return nil, sioErr("binary attachments not supported", nil)
	}
	if t < '0' || t > '4' {
		return nil, sioErr(fmt.Sprintf("unknown socket.io packet type %q", t), nil)
	}
	nsp := "/"
	if len(rest) > 0 && rest[0] == '/' {
		i := bytes.IndexByte(rest, ',')
		if i < 0 {
			nsp, rest = string(rest), nil
		} else {
			nsp, rest = string(rest[:i]), rest[i+1:]
		}
	}
	var id string
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n > 0 {
		if n > 18 {
			return nil, sioErr("ack id too long", nil)
		}
		id, rest = string(rest[:n]), rest[n:]
	}
	if nsp != s.nsp {
		return nil, nil // another namespace multiplexed on this connection
	}
	payload := bytes.TrimSpace(rest)
	if len(payload) > 0 && !json.Valid(payload) {
		return nil, sioErr("socket.io packet payload is not JSON", nil)
	}
	switch t {
	case '0': // CONNECT
		var c struct {
			SID string `json:"sid"`
		}
		if len(payload) > 0 {
			if err := json.Unmarshal(payload, &c); err != nil {
				return nil, sioErr("CONNECT payload", err)
			}
		}
		return []Msg{InitAck{Session: c.SID}}, nil
	case '1': // DISCONNECT
		return []Msg{Disconnect{Reason: "socket.io disconnect"}}, nil
	case '2': // EVENT
		var args []json.RawMessage
		if err := json.Unmarshal(payload, &args); err != nil || len(args) == 0 {
			return nil, sioErr("EVENT payload is not a non-empty JSON array", err)
		}
		var name string
		if err := json.Unmarshal(args[0], &name); err != nil {
			return nil, sioErr("EVENT name is not a string", err)
		}
		return []Msg{Event{Event: name, Data: sioArgs(args[1:]), AckID: id}}, nil
	case '3': // ACK
		if id == "" {
			return nil, sioErr("ACK without id", nil)
		}
		var args []json.RawMessage
		if err := json.Unmarshal(payload, &args); err != nil {
			return nil, sioErr("ACK payload is not a JSON array", err)
		}
		return []Msg{Ack{ID: id, Data: sioArgs(args)}}, nil
	default: // '4' CONNECT_ERROR
		var e struct {
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		if len(payload) > 0 && payload[0] == '{' {
			if err := json.Unmarshal(payload, &e); err != nil {
				return nil, sioErr("CONNECT_ERROR payload", err)
			}
		} else if len(payload) > 0 {
			_ = json.Unmarshal(payload, &e.Message) // v2-style string message; anything else: no message
		}
		code := "connect_error"
		if len(e.Data) > 0 {
			var d struct {
				Code string `json:"code"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Code != "" {
				code = d.Code
			}
		}
		return []Msg{Error{Code: code, Message: e.Message}}, nil
	}
}

// sioArgs returns the single argument, a JSON array of several, or null.
func sioArgs(args []json.RawMessage) json.RawMessage {
	switch len(args) {
	case 0:
		return json.RawMessage("null")
	case 1:
		return append(json.RawMessage(nil), args[0]...)
	default:
		b, err := json.Marshal(args)
		if err != nil {
			return json.RawMessage("null")
		}
		return b
	}
}

// ForURL picks the codec for a connect URL: a URL whose path contains
// "/socket.io" speaks socket.io v4 (configured by opts), any other URL
// pigeon.v1.
func ForURL(connectURL string, opts ...SocketIOOption) Codec {
	if i := strings.IndexAny(connectURL, "?#"); i >= 0 {
		connectURL = connectURL[:i]
	}
	if strings.Contains(connectURL, "/socket.io") {
		return SocketIO(opts...)
	}
	return PigeonV1()
}
