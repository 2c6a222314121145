package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// PigeonV1Name is the pigeon.v1 codec's Name and websocket sub-protocol.
const PigeonV1Name = "pigeon.v1"

// PigeonV1 returns the pigeon.v1 codec: text JSON envelopes
// {"type","id"?,"payload"?} as described in socket.md. The codec is
// stateless and safe for concurrent use.
func PigeonV1() Codec { return pigeonV1{} }

type pigeonV1 struct{}

var _ Codec = pigeonV1{}

func (pigeonV1) Name() string           { return PigeonV1Name }
func (pigeonV1) Subprotocols() []string { return []string{PigeonV1Name} }

// ServerSpeaksFirst is false: the client sends init at once.
func (pigeonV1) ServerSpeaksFirst() bool { return false }

func (pigeonV1) DedupesEmits() bool { return true }

// CloseClass: 4003 refresh, 4500–4999 terminal, any other code retry.
func (pigeonV1) CloseClass(code int) CloseClass { return closeClassV1(code) }

// DialURL maps http(s) to ws(s) and otherwise keeps the URL as given.
func (pigeonV1) DialURL(connectURL string) (string, error) {
	u, err := parseWSURL(PigeonV1Name, connectURL)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

func parseWSURL(codec, connectURL string) (*url.URL, error) {
	u, err := url.Parse(connectURL)
	if err != nil {
		return nil, fmt.Errorf("pigeon/wire: %s: bad connect URL: %w", codec, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("pigeon/wire: %s: connect URL %q: scheme must be ws, wss, http or https", codec, connectURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("pigeon/wire: %s: connect URL %q has no host", codec, connectURL)
	}
	return u, nil
}

type v1Envelope struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type v1Headers struct {
	Headers map[string]string `json:"headers"`
}

// flattenHeaders joins multi-valued headers with ", " (RFC 9110 list syntax).
func flattenHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		m[k] = strings.Join(v, ", ")
	}
	return m
}

type v1Join struct {
	Channel string    `json:"channel"`
	Since   *Position `json:"since,omitempty"`
}

type v1Leave struct {
	Channel string `json:"channel"`
}

type v1Emit struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	EmitID  string          `json:"emitId,omitempty"`
}

type v1Ping struct {
	T int64 `json:"t"`
}

func (c pigeonV1) Encode(op Op) ([]Frame, error) {
	var env v1Envelope
	var payload any
	switch op := op.(type) {
	case Init:
		env = v1Envelope{Type: "init", ID: op.ID}
		payload = v1Headers{Headers: flattenHeaders(op.Headers)}
	case Update:
		env = v1Envelope{Type: "update", ID: op.ID}
		payload = v1Headers{Headers: flattenHeaders(op.Headers)}
	case Join:
		env = v1Envelope{Type: "join", ID: op.ID}
		j := v1Join{Channel: op.Channel}
		if op.Since != (Position{}) {
			since := op.Since
			j.Since = &since
		}
		payload = j
	case Leave:
		env = v1Envelope{Type: "leave", ID: op.ID}
		payload = v1Leave{Channel: op.Channel}
	case Emit:
		if op.Event == "" {
			return nil, errors.New("pigeon/wire: pigeon.v1: emit without an event name")
		}
		if op.Args != nil {
			return nil, errors.New("pigeon/wire: pigeon.v1: emit arguments (several, or binary) are socket.io only; send one JSON value as Data")
		}
		if op.Data != nil && !json.Valid(op.Data) {
			return nil, errors.New("pigeon/wire: pigeon.v1: emit data is not valid JSON")
		}
		if b, ok := appendV1Emit(nil, op); ok {
			return []Frame{{Type: TextMessage, Data: b}}, nil
		}
		env = v1Envelope{Type: "emit", ID: op.ID}
		payload = v1Emit{Event: op.Event, Channel: op.Channel, Data: op.Data, EmitID: op.Key}
	case Ping:
		env = v1Envelope{Type: "ping"}
		payload = v1Ping(op)
	case Pong, EventAck:
		return nil, nil // pigeon.v1 servers never ping nor ask for acks
	case nil:
		return nil, errors.New("pigeon/wire: pigeon.v1: nil op")
	default:
		return nil, fmt.Errorf("pigeon/wire: pigeon.v1: unsupported op %T", op)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("pigeon/wire: pigeon.v1: encode %s: %w", env.Type, err)
	}
	env.Payload = p
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("pigeon/wire: pigeon.v1: encode %s: %w", env.Type, err)
	}
	return []Frame{{Type: TextMessage, Data: b}}, nil
}

func (pigeonV1) ExpectsReply(op Op) bool {
	switch op := op.(type) {
	case Init:
		return op.ID != ""
	case Update:
		return op.ID != ""
	case Join:
		return op.ID != ""
	case Leave:
		return op.ID != ""
	case Emit:
		return op.ID != ""
	}
	return false
}

type v1InitAck struct {
	Session        string `json:"session"`
	PingIntervalMs int64  `json:"pingIntervalMs"`
	MaxFrame       int64  `json:"maxFrame"`
}

type v1Ack struct {
	Channel   string `json:"channel"`
	Epoch     string `json:"epoch"`
	Seq       uint64 `json:"seq"`
	Recovered bool   `json:"recovered"`
}

type v1Event struct {
	Channel string          `json:"channel"`
	Event   string          `json:"event"`
	Epoch   string          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	Data    json.RawMessage `json:"data"`
}

type v1Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

func v1Err(reason string, err error) error {
	return &DecodeError{Codec: PigeonV1Name, Reason: reason, Err: err}
}

// decodeObject decodes an optional JSON object payload into v. An absent or
// null payload leaves v zero.
func decodeObject(p json.RawMessage, v any) error {
	p = bytes.TrimSpace(p)
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return nil
	}
	return json.Unmarshal(p, v)
}

func (pigeonV1) Decode(f Frame) ([]Msg, error) {
	if f.Type != TextMessage {
		return nil, v1Err("binary frame", nil)
	}
	var env v1Envelope
	if err := json.Unmarshal(f.Data, &env); err != nil {
		return nil, v1Err("not a JSON envelope", err)
	}
	switch env.Type {
	case "init_ack":
		var p v1InitAck
		if err := decodeObject(env.Payload, &p); err != nil {
			return nil, v1Err("init_ack payload", err)
		}
		if p.PingIntervalMs < 0 || p.MaxFrame < 0 {
			return nil, v1Err("init_ack: negative pingIntervalMs or maxFrame", nil)
		}
		return []Msg{InitAck{ID: env.ID, Session: p.Session, PingIntervalMs: p.PingIntervalMs, MaxFrame: p.MaxFrame}}, nil
	case "ack":
		// An ack without id answers nothing: the client ignores it (a
		// server that acks id-less emits is sloppy, not hostile).
		// The plain ack of an emit ({} or no payload) has nothing to
		// decode: skip the second pass.
		var p v1Ack
		if !emptyObject(env.Payload) {
			if err := decodeObject(env.Payload, &p); err != nil {
				return nil, v1Err("ack payload", err)
			}
		}
		var data json.RawMessage
		if len(env.Payload) > 0 {
			data = env.Payload // json.RawMessage's UnmarshalJSON copied it: ours
		}
		return []Msg{Ack{ID: env.ID, Channel: p.Channel, Position: Position{Epoch: p.Epoch, Seq: p.Seq}, Recovered: p.Recovered, Data: data}}, nil
	case "event":
		var p v1Event
		if err := decodeObject(env.Payload, &p); err != nil {
			return nil, v1Err("event payload", err)
		}
		if p.Event == "" {
			return nil, v1Err("event without an event name", nil)
		}
		var data json.RawMessage
		if len(p.Data) > 0 {
			data = p.Data // json.RawMessage's UnmarshalJSON copied it: ours
		}
		return []Msg{Event{Channel: p.Channel, Event: p.Event, Position: Position{Epoch: p.Epoch, Seq: p.Seq}, Data: data}}, nil
	case "error":
		var p v1Error
		if err := decodeObject(env.Payload, &p); err != nil {
			return nil, v1Err("error payload", err)
		}
		return []Msg{Error{ID: env.ID, Code: p.Code, Message: p.Message, Retryable: p.Retryable}}, nil
	case "pong":
		var p v1Ping
		if err := decodeObject(env.Payload, &p); err != nil {
			return nil, v1Err("pong payload", err)
		}
		return []Msg{ServerPong(p)}, nil
	case "":
		return nil, v1Err("envelope without type", nil)
	default:
		return nil, v1Err(fmt.Sprintf("unknown type %q", truncate(env.Type, 32)), nil)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// emptyObject reports whether p is absent or exactly {} (no whitespace):
// the payload of a plain ack.
func emptyObject(p json.RawMessage) bool {
	return len(p) == 0 || len(p) == 2 && p[0] == '{' && p[1] == '}'
}

// appendV1Emit appends the emit envelope to b in one pass, byte for byte
// what the two json.Marshal calls of Encode produce, when that is plain
// copying: every string is printable ASCII needing no escape, and Data has
// no byte json.Marshal would rewrite (whitespace, which it compacts; <, >,
// &, which it escapes; non-ASCII). Otherwise it reports false and Encode
// marshals. Data must already be valid JSON.
func appendV1Emit(b []byte, op Emit) ([]byte, bool) {
	if !plainJSONString(op.ID) || !plainJSONString(op.Event) || !plainJSONString(op.Channel) || !plainJSONString(op.Key) || !plainJSONData(op.Data) {
		return nil, false
	}
	n := 64 + len(op.ID) + len(op.Event) + len(op.Channel) + len(op.Key) + len(op.Data)
	if b == nil {
		b = make([]byte, 0, n)
	}
	b = append(b, `{"type":"emit"`...)
	if op.ID != "" {
		b = append(b, `,"id":"`...)
		b = append(b, op.ID...)
		b = append(b, '"')
	}
	b = append(b, `,"payload":{"event":"`...)
	b = append(b, op.Event...)
	b = append(b, '"')
	if op.Channel != "" {
		b = append(b, `,"channel":"`...)
		b = append(b, op.Channel...)
		b = append(b, '"')
	}
	if len(op.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, op.Data...)
	}
	if op.Key != "" {
		b = append(b, `,"emitId":"`...)
		b = append(b, op.Key...)
		b = append(b, '"')
	}
	return append(b, "}}"...), true
}

// plainJSONString reports whether json.Marshal writes s as "s".
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainJSONData reports whether json.Marshal copies the valid JSON d as it
// is (nothing to compact or escape).
func plainJSONData(d []byte) bool {
	for _, c := range d {
		if c <= ' ' || c > 0x7e || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
