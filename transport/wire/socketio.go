package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/apppigeon/pigeon/messages"
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

// TokenUpdate is how a socket.io connection carries new credentials.
type TokenUpdate int

const (
	// TokenUpdateReconnect (the zero value, the default): close the
	// transport and connect again at once with the new auth payload,
	// resuming the session through connection state recovery when the
	// server keeps sessions (socket.io ≥ 4.6 connectionStateRecovery), so
	// events sent meanwhile are replayed. A stock server needs nothing
	// more: its connect middleware sees the new token.
	TokenUpdateReconnect TokenUpdate = iota
	// TokenUpdateEvent: emit the update event (WithUpdateEvent) carrying
	// the auth payload on the live connection. The server must handle it
	// (see docs/socket.md).
	TokenUpdateEvent
)

// WithTokenUpdate sets how new credentials reach the server. Zero value
// (option not given): TokenUpdateReconnect.
func WithTokenUpdate(m TokenUpdate) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) { s.tokenUpdate = m })
}

// AuthErrorFunc says whether a CONNECT_ERROR (the connect middleware's
// next(err): err.data.code, or "connect_error", and err.message) refuses
// the credentials. Only such an error makes a client fetch fresh
// credentials; any other one is reported as it is.
type AuthErrorFunc func(code, message string) bool

// WithAuthError replaces the classification of connect errors. A nil f
// keeps the default, DefaultAuthError.
func WithAuthError(f AuthErrorFunc) SocketIOOption {
	return sioOptionFunc(func(s *socketIO) {
		if f != nil {
			s.authErr = f
		}
	})
}

// DefaultAuthError reports a connect error as a credentials refusal when
// its code or message mentions auth, a token, credentials, a login, a
// password, a JWT, expiry, "forbidden", 401 or 403 (case-insensitive):
// "unauthorized", "invalid token", "jwt expired" refuse the credentials;
// "server busy" does not.
func DefaultAuthError(code, message string) bool {
	s := strings.ToLower(code + " " + message)
	for _, w := range []string{"auth", "token", "credential", "forbidden", "jwt", "login", "password", "expired", "401", "403"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// UpdateReconnecter is implemented by codecs that carry new credentials
// by reconnecting instead of an Update op on the live connection.
type UpdateReconnecter interface {
	// UpdateByReconnect reports whether a credentials change closes the
	// transport and connects again with them.
	UpdateByReconnect() bool
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

// SocketIO returns the socket.io v4 codec (Engine.IO v4, websocket
// transport only). The codec is immutable and safe for concurrent use.
//
// Event and ack arguments: Event.Data and Ack.Data carry the first
// argument when there is exactly one, a JSON array of all arguments when
// there are several, and null when there are none; Event.Args has them one
// by one. A binary attachment is Binary in Args and a base64 JSON string in
// Data. An Emit or EventAck with Args sends several arguments, []byte ones
// as binary attachments.
//
// Binary packets: a BINARY_EVENT or BINARY_ACK header decodes to a
// Partial; the binary frames after it decode to Attachments, and
// Partial.Complete turns the header and its attachments into the Event or
// Ack. The receiver keeps that state per connection.
func SocketIO(opts ...SocketIOOption) Codec {
	s := &socketIO{nsp: "/", joinEvent: "join", leaveEvent: "leave", updateEvent: "update", auth: DefaultAuthPayload, authErr: DefaultAuthError}
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
	authErr     AuthErrorFunc
	tokenUpdate TokenUpdate
}

var (
	_ Codec             = (*socketIO)(nil)
	_ UpdateReconnecter = (*socketIO)(nil)
)

// UpdateByReconnect is true unless WithTokenUpdate(TokenUpdateEvent).
func (s *socketIO) UpdateByReconnect() bool { return s.tokenUpdate == TokenUpdateReconnect }

func (*socketIO) Name() string           { return SocketIOName }
func (*socketIO) Subprotocols() []string { return nil }

// ServerSpeaksFirst is true: Engine.IO's open packet precedes CONNECT.
func (*socketIO) ServerSpeaksFirst() bool { return true }

func (*socketIO) DedupesEmits() bool { return false }

// CloseClass: socket.io servers end with 1000/1001/1006 (retry); a
// gateway in front of one may use pigeon.v1's 4xxx classes, which are
// honoured the same way.
func (*socketIO) CloseClass(code int) CloseClass { return closeClassV1(code) }

// DialURL maps http(s) to ws(s); a path without "/socket.io" gets
// "/socket.io/" appended (so a proxy prefix "/api" dials
// "/api/socket.io/"); the query gets EIO=4 and transport=websocket, other
// query parameters are kept. A path that goes on after "/socket.io/"
// ("/socket.io/chat") is an error: socket.io's path ends there, and a
// namespace is named with WithNamespace (SocketConnectParams.Namespace),
// never joined silently as "/".
func (*socketIO) DialURL(connectURL string) (string, error) {
	u, err := parseWSURL(SocketIOName, connectURL)
	if err != nil {
		return "", err
	}
	if i := strings.LastIndex(u.Path, "/socket.io"); i >= 0 {
		if rest := strings.Trim(u.Path[i+len("/socket.io"):], "/"); rest != "" {
			return "", fmt.Errorf("pigeon/wire: socket.io: URL path %q goes on after /socket.io/ (%q): a namespace is not part of the path; connect to %q and set the namespace (SocketConnectParams.Namespace %q)",
				u.Path, rest, u.Path[:i+len("/socket.io/")], "/"+rest)
		}
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

// prefix returns "4<t>", the attachment count ("<n>-") when n > 0, the
// namespace prefix and the ack id.
func (s *socketIO) prefix(t byte, id string, n int) ([]byte, error) {
	b := []byte{'4', t}
	if n > 0 {
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, '-')
	}
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
	b, err := s.prefix('2', id, 0)
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
		if op.PID != "" {
			if p, err = withRecovery(p, op.PID, op.Offset); err != nil {
				return nil, err
			}
		}
		b, _ := s.prefix('0', "", 0)
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
		if op.Args != nil {
			name, _ := json.Marshal(op.Event)
			return s.withArgs('2', op.ID, json.RawMessage(name), op.Args)
		}
		if op.Data == nil {
			return s.event(op.ID, op.Event)
		}
		if !json.Valid(op.Data) {
			return nil, errors.New("pigeon/wire: socket.io: emit data is not valid JSON")
		}
		return s.event(op.ID, op.Event, op.Data)
	case EventAck:
		if op.ID == "" {
			return nil, errors.New("pigeon/wire: socket.io: event ack without id")
		}
		if op.Args != nil {
			return s.withArgs('3', op.ID, nil, op.Args)
		}
		b, err := s.prefix('3', op.ID, 0)
		if err != nil {
			return nil, err
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
	if f.Type == BinaryMessage {
		// Engine.IO v4 sends a binary attachment as a bare binary frame.
		return []Msg{Attachment{Data: f.Data}}, nil
	}
	if f.Type != TextMessage {
		return nil, sioErr(fmt.Sprintf("frame type %d", f.Type), nil)
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

// maxAttachments bounds the binary attachments one packet may announce.
const maxAttachments = 1 << 10

// decodePacket decodes one socket.io packet (the Engine.IO message body):
// <type>[<attachments>-][<nsp>,][<id>][<json>].
func (s *socketIO) decodePacket(p []byte) ([]Msg, error) {
	if len(p) == 0 {
		return nil, sioErr("empty socket.io packet", nil)
	}
	t := p[0]
	rest := p[1:]
	if t < '0' || t > '6' {
		return nil, sioErr(fmt.Sprintf("unknown socket.io packet type %q", t), nil)
	}
	attachments := 0
	if t == '5' || t == '6' {
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 0 || n >= len(rest) || rest[n] != '-' || n > 4 {
			return nil, sioErr("binary packet without a valid attachment count", nil)
		}
		attachments, _ = strconv.Atoi(string(rest[:n]))
		if attachments > maxAttachments {
			return nil, sioErr("binary packet announces too many attachments", nil)
		}
		rest = rest[n+1:]
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
	payload := bytes.TrimSpace(rest)
	if len(payload) > 0 && !json.Valid(payload) {
		return nil, sioErr("socket.io packet payload is not JSON", nil)
	}
	if nsp != s.nsp {
		if attachments > 0 {
			// Its attachments follow: they must be consumed and dropped.
			return []Msg{Partial{Attachments: attachments, complete: func([][]byte) (Msg, error) { return nil, nil }}}, nil
		}
		return nil, nil // another namespace multiplexed on this connection
	}
	switch t {
	case '0': // CONNECT
		var c struct {
			SID string `json:"sid"`
			PID string `json:"pid"`
		}
		if len(payload) > 0 {
			if err := json.Unmarshal(payload, &c); err != nil {
				return nil, sioErr("CONNECT payload", err)
			}
		}
		return []Msg{InitAck{Session: c.SID, PID: c.PID}}, nil
	case '1': // DISCONNECT
		return []Msg{Disconnect{Reason: "socket.io disconnect", Final: true}}, nil
	case '2', '5': // EVENT, BINARY_EVENT
		var args []json.RawMessage
		if err := json.Unmarshal(payload, &args); err != nil || len(args) == 0 {
			return nil, sioErr("EVENT payload is not a non-empty JSON array", err)
		}
		var name string
		if err := json.Unmarshal(args[0], &name); err != nil {
			return nil, sioErr("EVENT name is not a string", err)
		}
		if t == '2' {
			return []Msg{sioEvent(name, id, plainArgs(args[1:]))}, nil
		}
		return []Msg{Partial{Attachments: attachments, complete: func(bins [][]byte) (Msg, error) {
			a, err := fillArgs(args[1:], bins)
			if err != nil {
				return nil, err
			}
			return sioEvent(name, id, a), nil
		}}}, nil
	case '3', '6': // ACK, BINARY_ACK
		if id == "" {
			return nil, sioErr("ACK without id", nil)
		}
		var args []json.RawMessage
		if err := json.Unmarshal(payload, &args); err != nil {
			return nil, sioErr("ACK payload is not a JSON array", err)
		}
		if t == '3' {
			return []Msg{Ack{ID: id, Data: sioArgs(args)}}, nil
		}
		return []Msg{Partial{Attachments: attachments, complete: func(bins [][]byte) (Msg, error) {
			a, err := fillArgs(args, bins)
			if err != nil {
				return nil, err
			}
			return Ack{ID: id, Data: argsData(a)}, nil
		}}}, nil
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
		return []Msg{Error{Code: code, Message: e.Message, NotCredentials: !s.authErr(code, e.Message)}}, nil
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

// Arg is one argument of a socket.io event or ack (messages.SocketArg):
// Binary when it travels as a binary attachment, JSON otherwise.
type Arg = messages.SocketArg

// ArgsOf turns values into arguments: a []byte is a binary attachment, a
// json.RawMessage is taken as it is (it must be valid JSON), anything else
// is encoded with encoding/json. It never returns nil.
func ArgsOf(vals ...any) ([]Arg, error) {
	out := make([]Arg, 0, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case []byte:
			out = append(out, Arg{Binary: append([]byte{}, v...)})
		case json.RawMessage:
			if !json.Valid(v) {
				return nil, fmt.Errorf("pigeon/wire: argument %d: not valid JSON", i)
			}
			out = append(out, Arg{JSON: append(json.RawMessage(nil), v...)})
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("pigeon/wire: argument %d: %w", i, err)
			}
			out = append(out, Arg{JSON: b})
		}
	}
	return out, nil
}

// Partial is the header of a socket.io binary packet (BINARY_EVENT or
// BINARY_ACK): Attachments binary frames follow it, each decoded as an
// Attachment. Complete turns them into the Event or Ack (nil for a packet
// of another namespace, whose attachments are only consumed).
type Partial struct {
	Attachments int
	complete    func(bins [][]byte) (Msg, error)
}

// Complete assembles the packet from its attachments, in order. A
// placeholder naming an attachment that is not there is a *DecodeError.
func (p Partial) Complete(bins [][]byte) (Msg, error) {
	if len(bins) != p.Attachments {
		return nil, sioErr(fmt.Sprintf("binary packet: %d attachments, want %d", len(bins), p.Attachments), nil)
	}
	if p.complete == nil {
		return nil, nil
	}
	return p.complete(bins)
}

// Attachment is one binary frame: an attachment of the Partial before it.
type Attachment struct{ Data []byte }

func (Partial) isMsg()    {}
func (Attachment) isMsg() {}

// withRecovery adds pid and offset to the CONNECT auth payload, unless
// the payload sets them itself (as socket.io-client does:
// Object.assign({pid, offset}, auth)).
func withRecovery(p json.RawMessage, pid, offset string) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("pigeon/wire: socket.io: auth payload: %w", err)
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	if _, ok := m["pid"]; !ok {
		m["pid"], _ = json.Marshal(pid)
	}
	if _, ok := m["offset"]; !ok && offset != "" {
		m["offset"], _ = json.Marshal(offset)
	}
	return json.Marshal(m)
}

// withArgs encodes an event (name non-nil) or ack with its arguments,
// binary ones as placeholders followed by binary frames (BINARY_EVENT
// `45`, BINARY_ACK `46`).
func (s *socketIO) withArgs(t byte, id string, name json.RawMessage, args []Arg) ([]Frame, error) {
	arr := make([]byte, 0, 64)
	arr = append(arr, '[')
	if name != nil {
		arr = append(arr, name...)
	}
	var bins []Frame
	for i, a := range args {
		if i > 0 || name != nil {
			arr = append(arr, ',')
		}
		if a.Binary != nil {
			arr = fmt.Appendf(arr, `{"_placeholder":true,"num":%d}`, len(bins))
			bins = append(bins, Frame{Type: BinaryMessage, Data: a.Binary})
			continue
		}
		if len(a.JSON) == 0 || !json.Valid(a.JSON) {
			return nil, fmt.Errorf("pigeon/wire: socket.io: argument %d is not valid JSON", i)
		}
		arr = append(arr, a.JSON...)
	}
	arr = append(arr, ']')
	if len(bins) > 0 {
		t += 3 // '2' → '5' (BINARY_EVENT), '3' → '6' (BINARY_ACK)
	}
	b, err := s.prefix(t, id, len(bins))
	if err != nil {
		return nil, err
	}
	return append([]Frame{{Type: TextMessage, Data: append(b, arr...)}}, bins...), nil
}

// sioEvent builds an Event from its arguments.
func sioEvent(name, ackID string, args []Arg) Event {
	return Event{Event: name, AckID: ackID, Args: args, Data: argsData(args)}
}

// plainArgs wraps JSON arguments (fresh memory from json.Unmarshal).
func plainArgs(raw []json.RawMessage) []Arg {
	a := make([]Arg, len(raw))
	for i, r := range raw {
		a[i].JSON = r
	}
	return a
}

// argsData is Data for args: the single argument (sharing its bytes), a
// JSON array of several, or null.
func argsData(args []Arg) json.RawMessage {
	switch len(args) {
	case 0:
		return json.RawMessage("null")
	case 1:
		return args[0].JSON
	}
	b := make([]byte, 0, 64)
	b = append(b, '[')
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a.JSON...)
	}
	return append(b, ']')
}

type placeholder struct {
	Placeholder bool `json:"_placeholder"`
	Num         *int `json:"num"`
}

// fillArgs replaces the placeholders of a binary packet with its
// attachments: a top-level one becomes a Binary argument (base64 in
// JSON), a nested one a base64 string.
func fillArgs(raw []json.RawMessage, bins [][]byte) ([]Arg, error) {
	out := make([]Arg, len(raw))
	for i, r := range raw {
		var ph placeholder
		if len(r) > 0 && r[0] == '{' && json.Unmarshal(r, &ph) == nil && ph.Placeholder && ph.Num != nil {
			if *ph.Num < 0 || *ph.Num >= len(bins) {
				return nil, sioErr(fmt.Sprintf("placeholder %d names no attachment", *ph.Num), nil)
			}
			b := bins[*ph.Num]
			out[i].Binary = b
			out[i].JSON, _ = json.Marshal(b)
			continue
		}
		if !bytes.Contains(r, []byte(`"_placeholder"`)) {
			out[i].JSON = r
			continue
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, sioErr("binary packet argument", err)
		}
		v, err := fillNested(v, bins)
		if err != nil {
			return nil, err
		}
		if out[i].JSON, err = json.Marshal(v); err != nil {
			return nil, sioErr("binary packet argument", err)
		}
	}
	return out, nil
}

func fillNested(v any, bins [][]byte) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if p, _ := v["_placeholder"].(bool); p {
			if n, ok := v["num"].(json.Number); ok {
				i, err := n.Int64()
				if err != nil || i < 0 || i >= int64(len(bins)) {
					return nil, sioErr(fmt.Sprintf("placeholder %s names no attachment", n), nil)
				}
				return bins[i], nil
			}
		}
		for k, e := range v {
			f, err := fillNested(e, bins)
			if err != nil {
				return nil, err
			}
			v[k] = f
		}
	case []any:
		for k, e := range v {
			f, err := fillNested(e, bins)
			if err != nil {
				return nil, err
			}
			v[k] = f
		}
	}
	return v, nil
}

// SocketIOOffset takes the connection-state-recovery offset off an event:
// a server that keeps sessions appends it as the last argument of every
// event it stores (one without an ack request). It returns the event
// without it and the offset; ok is false (ev unchanged) when the event
// carries none.
func SocketIOOffset(ev Event) (out Event, offset string, ok bool) {
	n := len(ev.Args)
	if ev.AckID != "" || n == 0 {
		return ev, "", false
	}
	last := ev.Args[n-1]
	if last.Binary != nil || len(last.JSON) == 0 || last.JSON[0] != '"' || json.Unmarshal(last.JSON, &offset) != nil {
		return ev, "", false
	}
	ev.Args = ev.Args[:n-1]
	ev.Data = argsData(ev.Args)
	return ev, offset, true
}
