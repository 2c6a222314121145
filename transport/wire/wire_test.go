package wire

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestPigeonV1Encode(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer T"}}
	for _, tc := range []struct {
		name string
		op   Op
		want string
	}{
		{"init", Init{ID: "c1", Headers: h}, `{"type":"init","id":"c1","payload":{"headers":{"Authorization":"Bearer T"}}}`},
		{"update", Update{ID: "c2", Headers: h}, `{"type":"update","id":"c2","payload":{"headers":{"Authorization":"Bearer T"}}}`},
		{"join since", Join{ID: "c3", Channel: "room:42", Since: Position{Epoch: "e7", Seq: 17}}, `{"type":"join","id":"c3","payload":{"channel":"room:42","since":{"epoch":"e7","seq":17}}}`},
		{"join fresh", Join{ID: "c3", Channel: "room:42"}, `{"type":"join","id":"c3","payload":{"channel":"room:42"}}`},
		{"leave", Leave{ID: "c4", Channel: "room:42"}, `{"type":"leave","id":"c4","payload":{"channel":"room:42"}}`},
		{"emit", Emit{ID: "c5", Event: "message", Channel: "room:42", Data: json.RawMessage(`{"a":1}`)}, `{"type":"emit","id":"c5","payload":{"event":"message","channel":"room:42","data":{"a":1}}}`},
		{"ping", Ping{T: 1712345678}, `{"type":"ping","payload":{"t":1712345678}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := PigeonV1().Encode(tc.op)
			if err != nil || len(fs) != 1 || string(fs[0].Data) != tc.want || fs[0].Type != TextMessage {
				t.Fatalf("got %v %v, want %s", err, fs, tc.want)
			}
		})
	}
}

func TestPigeonV1Decode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Msg
	}{
		{"init_ack", `{"type":"init_ack","id":"c1","payload":{"session":"s9","pingIntervalMs":25000,"maxFrame":65536}}`, InitAck{ID: "c1", Session: "s9", PingIntervalMs: 25000, MaxFrame: 65536}},
		{"ack", `{"type":"ack","id":"c3","payload":{"channel":"room:42","epoch":"e7","seq":17,"recovered":true}}`, Ack{ID: "c3", Channel: "room:42", Position: Position{Epoch: "e7", Seq: 17}, Recovered: true, Data: json.RawMessage(`{"channel":"room:42","epoch":"e7","seq":17,"recovered":true}`)}},
		{"event", `{"type":"event","payload":{"channel":"room:42","event":"message","epoch":"e7","seq":18,"data":{"x":1}}}`, Event{Channel: "room:42", Event: "message", Position: Position{Epoch: "e7", Seq: 18}, Data: json.RawMessage(`{"x":1}`)}},
		{"error", `{"type":"error","id":"c5","payload":{"code":"forbidden","message":"no","retryable":false}}`, Error{ID: "c5", Code: "forbidden", Message: "no"}},
		{"pong", `{"type":"pong","payload":{"t":1712345678}}`, ServerPong{T: 1712345678}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := PigeonV1().Decode(Frame{Type: TextMessage, Data: []byte(tc.in)})
			if err != nil || len(ms) != 1 || !reflect.DeepEqual(ms[0], tc.want) {
				t.Fatalf("got %v %#v, want %#v", err, ms, tc.want)
			}
		})
	}
	for _, bad := range []string{``, `{`, `[]`, `{"type":"nope"}`, `{"payload":{}}`, `{"type":"event","payload":{"seq":-1,"event":"x"}}`, `{"type":"event","payload":{}}`} {
		_, err := PigeonV1().Decode(Frame{Type: TextMessage, Data: []byte(bad)})
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("Decode(%q) = %v, want *DecodeError", bad, err)
		}
	}
}

func TestSocketIOEncode(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer tok"}}
	for _, tc := range []struct {
		name string
		c    Codec
		op   Op
		want string
	}{
		{"init", SocketIO(), Init{Headers: h}, `40{"token":"tok"}`},
		{"init ns", SocketIO(WithNamespace("chat")), Init{Headers: h}, `40/chat,{"token":"tok"}`},
		{"init carries the token, not other headers", SocketIO(), Init{Headers: http.Header{"Authorization": {"Bearer tok"}, "X-Client": {"app"}}}, `40{"token":"tok"}`},
		{"init without a token", SocketIO(), Init{Headers: http.Header{"X-Client": {"app"}}}, `40{}`},
		{"emit", SocketIO(), Emit{Event: "message", Data: json.RawMessage(`{"a":1}`)}, `42["message",{"a":1}]`},
		{"emit ack", SocketIO(), Emit{ID: "12", Event: "message", Data: json.RawMessage(`1`)}, `4212["message",1]`},
		{"emit ns ack", SocketIO(WithNamespace("/chat")), Emit{ID: "3", Event: "m"}, `42/chat,3["m"]`},
		{"join", SocketIO(), Join{Channel: "room:1"}, `42["join","room:1"]`},
		{"join custom", SocketIO(WithJoinEvent("subscribe")), Join{Channel: "r"}, `42["subscribe","r"]`},
		{"leave", SocketIO(), Leave{Channel: "r"}, `42["leave","r"]`},
		{"update", SocketIO(), Update{Headers: h}, `42["update",{"token":"tok"}]`},
		{"pong", SocketIO(), Pong{}, `3`},
		{"event ack", SocketIO(), EventAck{ID: "7"}, `437[]`},
		{"custom auth", SocketIO(WithAuthPayload(func(http.Header) (json.RawMessage, error) { return json.RawMessage(`{"k":"v"}`), nil })), Init{}, `40{"k":"v"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := tc.c.Encode(tc.op)
			if err != nil || len(fs) != 1 || string(fs[0].Data) != tc.want {
				t.Fatalf("got %v %v, want %s", err, fs, tc.want)
			}
		})
	}
	if _, err := SocketIO().Encode(Emit{ID: "c1", Event: "x"}); err == nil {
		t.Error("non-numeric ack id accepted")
	}
}

func TestSocketIODecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Codec
		in   string
		want []Msg
	}{
		{"open", SocketIO(), `0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`, []Msg{Open{SID: "a", PingInterval: 25000, PingTimeout: 20000, MaxPayload: 1000000}}},
		{"ping", SocketIO(), `2`, []Msg{ServerPing{}}},
		{"pong", SocketIO(), `3`, []Msg{ServerPong{}}},
		{"close", SocketIO(), `1`, []Msg{Disconnect{Reason: "engine.io close"}}},
		{"noop", SocketIO(), `6`, nil},
		{"connect", SocketIO(), `40{"sid":"x"}`, []Msg{InitAck{Session: "x"}}},
		{"connect ns", SocketIO(WithNamespace("/chat")), `40/chat,{"sid":"y"}`, []Msg{InitAck{Session: "y"}}},
		{"other ns ignored", SocketIO(), `40/chat,{"sid":"y"}`, nil},
		{"disconnect", SocketIO(), `41`, []Msg{Disconnect{Reason: "socket.io disconnect", Final: true}}},
		{"event one arg", SocketIO(), `42["message",{"a":1}]`, []Msg{Event{Event: "message", Data: json.RawMessage(`{"a":1}`), Args: []Arg{{JSON: json.RawMessage(`{"a":1}`)}}}}},
		{"event no arg", SocketIO(), `42["tick"]`, []Msg{Event{Event: "tick", Data: json.RawMessage(`null`), Args: []Arg{}}}},
		{"event args", SocketIO(), `42["m",1,"two"]`, []Msg{Event{Event: "m", Data: json.RawMessage(`[1,"two"]`), Args: []Arg{{JSON: json.RawMessage(`1`)}, {JSON: json.RawMessage(`"two"`)}}}}},
		{"event ack id ns", SocketIO(WithNamespace("/n")), `42/n,12["m",1]`, []Msg{Event{Event: "m", Data: json.RawMessage(`1`), AckID: "12", Args: []Arg{{JSON: json.RawMessage(`1`)}}}}},
		{"ack", SocketIO(), `4312[{"ok":true}]`, []Msg{Ack{ID: "12", Data: json.RawMessage(`{"ok":true}`)}}},
		{"connect error", SocketIO(), `44{"message":"unauthorized","data":{"code":"unauthorized"}}`, []Msg{Error{Code: "unauthorized", Message: "unauthorized"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := tc.c.Decode(Frame{Type: TextMessage, Data: []byte(tc.in)})
			if err != nil || !reflect.DeepEqual(ms, tc.want) {
				t.Fatalf("got %v %#v, want %#v", err, ms, tc.want)
			}
		})
	}
	for _, bad := range []string{``, `9`, `0{`, `4`, `47`, `42`, `42[]`, `42[1]`, `43[]`, `42{`, `45["a"]`, `46`, `4599999-["a"]`} {
		_, err := SocketIO().Decode(Frame{Type: TextMessage, Data: []byte(bad)})
		if !errors.As(err, new(*DecodeError)) {
			t.Errorf("Decode(%q) = %v, want *DecodeError", bad, err)
		}
	}
	if ms, err := SocketIO().Decode(Frame{Type: BinaryMessage, Data: []byte{1}}); err != nil || !reflect.DeepEqual(ms, []Msg{Attachment{Data: []byte{1}}}) {
		t.Errorf("binary frame: %v %#v", err, ms)
	}
}

func TestDialURL(t *testing.T) {
	for _, tc := range []struct {
		c        Codec
		in, want string
	}{
		{PigeonV1(), "http://h:1/ws?x=1", "ws://h:1/ws?x=1"},
		{PigeonV1(), "wss://h/ws", "wss://h/ws"},
		{SocketIO(), "http://h:1/socket.io/", "ws://h:1/socket.io/?EIO=4&transport=websocket"},
		{SocketIO(), "https://h/api", "wss://h/api/socket.io/?EIO=4&transport=websocket"},
		{SocketIO(), "ws://h/custom/socket.io/?a=b", "ws://h/custom/socket.io/?EIO=4&a=b&transport=websocket"},
	} {
		got, err := tc.c.DialURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s DialURL(%q) = %q %v, want %q", tc.c.Name(), tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"ftp://h/", "ws://", "::"} {
		if _, err := PigeonV1().DialURL(bad); err == nil {
			t.Errorf("DialURL(%q) accepted", bad)
		}
	}
	if ForURL("http://h/socket.io/").Name() != SocketIOName || ForURL("http://h/ws?p=/socket.io").Name() != PigeonV1Name {
		t.Error("ForURL picked the wrong codec")
	}
}

func FuzzPigeonV1Decode(f *testing.F) {
	for _, s := range []string{`{"type":"init_ack","id":"c1","payload":{"session":"s9","pingIntervalMs":25000}}`, `{"type":"event","payload":{"channel":"r","event":"m","epoch":"e","seq":1,"data":{}}}`, `{"type":"ack","id":"1","payload":null}`, `{"type":"error"}`, `{"type":"pong","payload":{"t":1}}`} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, text bool) {
		typ := TextMessage
		if !text {
			typ = BinaryMessage
		}
		ms, err := PigeonV1().Decode(Frame{Type: typ, Data: []byte(s)})
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if ms != nil {
				t.Fatal("messages returned with an error")
			}
		}
	})
}

func FuzzSocketIODecode(f *testing.F) {
	for _, s := range []string{`0{"sid":"a","pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`, `2`, `3`, `40{"sid":"x"}`, `40/chat,{"sid":"y"}`, `41`, `42["m",{"a":1}]`, `42/n,12["m",1,2]`, `4312[{"ok":true}]`, `44{"message":"no"}`, `451-["a",{"_placeholder":true,"num":0}]`} {
		f.Add(s, "/")
	}
	f.Add(`42/chat,1["x"]`, "/chat")
	f.Fuzz(func(t *testing.T, s, ns string) {
		ms, err := SocketIO(WithNamespace(ns)).Decode(Frame{Type: TextMessage, Data: []byte(s)})
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if ms != nil {
				t.Fatal("messages returned with an error")
			}
			return
		}
		for _, m := range ms {
			if e, ok := m.(Event); ok && !json.Valid(e.Data) {
				t.Fatalf("event data %q is not JSON", e.Data)
			}
		}
	})
}

func TestPigeonV1_AckWithoutIDIsHarmless(t *testing.T) {
	msgs, err := PigeonV1().Decode(Frame{Type: TextMessage, Data: []byte(`{"type":"ack","payload":{"channel":"c","epoch":"e","seq":3}}`)})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Decode = %v, %v", msgs, err)
	}
	if a, ok := msgs[0].(Ack); !ok || a.ID != "" || a.Position.Seq != 3 {
		t.Fatalf("got %#v", msgs[0])
	}
}

// The protocol decisions the SocketConn asks its codec for: who speaks
// first, and what each close code means.
func TestCodec_CloseClassAndWhoSpeaksFirst(t *testing.T) {
	for _, c := range []struct {
		codec Codec
		first bool
		dedup bool
	}{{PigeonV1(), false, true}, {SocketIO(), true, false}} {
		if got := c.codec.ServerSpeaksFirst(); got != c.first {
			t.Errorf("%s: ServerSpeaksFirst = %v, want %v", c.codec.Name(), got, c.first)
		}
		if got := c.codec.DedupesEmits(); got != c.dedup {
			t.Errorf("%s: DedupesEmits = %v, want %v", c.codec.Name(), got, c.dedup)
		}
		for _, tc := range []struct {
			code int
			want CloseClass
		}{
			{1000, CloseRetry}, {1001, CloseRetry}, {1006, CloseRetry}, {4000, CloseRetry}, {4002, CloseRetry},
			{4003, CloseRefresh}, {4004, CloseRetry}, {4499, CloseRetry},
			{4500, CloseTerminal}, {4501, CloseTerminal}, {CloseBadMessage, CloseTerminal}, {4999, CloseTerminal}, {5000, CloseRetry},
		} {
			if got := c.codec.CloseClass(tc.code); got != tc.want {
				t.Errorf("%s: CloseClass(%d) = %v, want %v", c.codec.Name(), tc.code, got, tc.want)
			}
		}
	}
}
