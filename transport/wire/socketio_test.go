package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Several arguments, binary attachments, recovery offsets and the
// connect-error classification of the socket.io codec (docs/socket.md
// F-rows; the same scenarios against the npm server and socket.io-client
// are in actors/socketio_fidelity_test.go).
func TestSocketIO_ArgsAndBinaryEncode(t *testing.T) {
	args, err := ArgsOf(1, "two", json.RawMessage(`{"three":3}`), []byte{0xff, 0})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := SocketIO(WithNamespace("/chat")).Encode(Emit{ID: "4", Event: "m", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	want := []Frame{
		{Type: TextMessage, Data: []byte(`451-/chat,4["m",1,"two",{"three":3},{"_placeholder":true,"num":0}]`)},
		{Type: BinaryMessage, Data: []byte{0xff, 0}},
	}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("got %q", fs)
	}
	fs, err = SocketIO().Encode(Emit{Event: "m", Args: args[:2]})
	if err != nil || len(fs) != 1 || string(fs[0].Data) != `42["m",1,"two"]` {
		t.Fatalf("plain args: %v %q", err, fs)
	}
	fs, err = SocketIO().Encode(EventAck{ID: "9", Args: args[1:]})
	if err != nil || len(fs) != 2 || string(fs[0].Data) != `461-9["two",{"three":3},{"_placeholder":true,"num":0}]` {
		t.Fatalf("binary ack: %v %q", err, fs)
	}
	if _, err := SocketIO().Encode(Emit{Event: "m", Args: []Arg{{JSON: json.RawMessage(`{`)}}}); err == nil {
		t.Error("invalid JSON argument accepted")
	}
	if _, err := ArgsOf(func() {}); err == nil {
		t.Error("ArgsOf took a func")
	}
	if _, err := PigeonV1().Encode(Emit{Event: "m", Args: args}); err == nil || !strings.Contains(err.Error(), "socket.io only") {
		t.Errorf("pigeon.v1 with args: %v", err)
	}
}

func TestSocketIO_BinaryDecode(t *testing.T) {
	c := SocketIO()
	ms, err := c.Decode(Frame{Type: TextMessage, Data: []byte(`452-7["file",{"_placeholder":true,"num":1},{"meta":{"b":{"_placeholder":true,"num":0}},"n":1}]`)})
	if err != nil || len(ms) != 1 {
		t.Fatal(err, ms)
	}
	p, ok := ms[0].(Partial)
	if !ok || p.Attachments != 2 {
		t.Fatalf("got %#v", ms[0])
	}
	if _, err := p.Complete([][]byte{{1}}); !errors.As(err, new(*DecodeError)) {
		t.Errorf("one attachment of two: %v", err)
	}
	m, err := p.Complete([][]byte{{1, 2}, {3}})
	if err != nil {
		t.Fatal(err)
	}
	ev := m.(Event)
	if ev.Event != "file" || ev.AckID != "7" || len(ev.Args) != 2 || !reflect.DeepEqual(ev.Args[0].Binary, []byte{3}) || ev.Args[1].Binary != nil {
		t.Fatalf("event %#v", ev)
	}
	if string(ev.Args[1].JSON) != `{"meta":{"b":"AQI="},"n":1}` || string(ev.Data) != `["Aw==",{"meta":{"b":"AQI="},"n":1}]` {
		t.Fatalf("json %s / data %s", ev.Args[1].JSON, ev.Data)
	}
	ms, err = c.Decode(Frame{Type: TextMessage, Data: []byte(`461-3[{"_placeholder":true,"num":0}]`)})
	if err != nil {
		t.Fatal(err)
	}
	m, err = ms[0].(Partial).Complete([][]byte{{9}})
	if err != nil || !reflect.DeepEqual(m, Ack{ID: "3", Data: json.RawMessage(`"CQ=="`)}) {
		t.Fatalf("binary ack: %v %#v", err, m)
	}
	ms, err = c.Decode(Frame{Type: TextMessage, Data: []byte(`451-["x",{"_placeholder":true,"num":5}]`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].(Partial).Complete([][]byte{{1}}); !errors.As(err, new(*DecodeError)) {
		t.Errorf("placeholder beyond the attachments: %v", err)
	}
	// Another namespace's binary packet: its attachments are consumed.
	ms, err = c.Decode(Frame{Type: TextMessage, Data: []byte(`451-/other,["x",{"_placeholder":true,"num":0}]`)})
	if err != nil || ms[0].(Partial).Attachments != 1 {
		t.Fatal(err, ms)
	}
	if m, err := ms[0].(Partial).Complete([][]byte{{1}}); err != nil || m != nil {
		t.Fatalf("other namespace: %v %v", m, err)
	}
}

func TestSocketIO_RecoveryAndOffsets(t *testing.T) {
	fs, err := SocketIO().Encode(Init{PID: "p1", Offset: "o9"})
	if err != nil || string(fs[0].Data) != `40{"offset":"o9","pid":"p1"}` {
		t.Fatalf("init: %v %q", err, fs)
	}
	ms, err := SocketIO().Decode(Frame{Type: TextMessage, Data: []byte(`40{"sid":"s","pid":"p1"}`)})
	if err != nil || !reflect.DeepEqual(ms, []Msg{InitAck{Session: "s", PID: "p1"}}) {
		t.Fatalf("connect: %v %#v", err, ms)
	}
	ms, _ = SocketIO().Decode(Frame{Type: TextMessage, Data: []byte(`42["m",{"a":1},"off1"]`)})
	ev, off, ok := SocketIOOffset(ms[0].(Event))
	if !ok || off != "off1" || string(ev.Data) != `{"a":1}` || len(ev.Args) != 1 {
		t.Fatalf("offset: %v %q %#v", ok, off, ev)
	}
	ms, _ = SocketIO().Decode(Frame{Type: TextMessage, Data: []byte(`425["m",{"a":1},"not-an-offset"]`)})
	if _, _, ok := SocketIOOffset(ms[0].(Event)); ok {
		t.Error("an event asking for an ack carries no offset")
	}
}

func TestSocketIO_NamespaceInPathIsAnError(t *testing.T) {
	_, err := SocketIO().DialURL("http://h/socket.io/chat")
	if err == nil || !strings.Contains(err.Error(), `Namespace "/chat"`) {
		t.Fatalf("DialURL: %v", err)
	}
	for _, ok := range []string{"http://h/socket.io", "http://h/socket.io/", "http://h/api/socket.io/?x=1"} {
		if _, err := SocketIO().DialURL(ok); err != nil {
			t.Errorf("DialURL(%q): %v", ok, err)
		}
	}
}

func TestSocketIO_ConnectErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		auth bool
	}{
		{`44{"message":"unauthorized","data":{"code":"unauthorized"}}`, true},
		{`44{"message":"jwt expired"}`, true},
		{`44{"message":"invalid token"}`, true},
		{`44{"message":"server busy","data":{"code":"busy"}}`, false},
		{`44{"message":"Invalid namespace"}`, false},
	} {
		ms, err := SocketIO().Decode(Frame{Type: TextMessage, Data: []byte(tc.in)})
		if err != nil {
			t.Fatal(err)
		}
		if e := ms[0].(Error); e.NotCredentials == tc.auth {
			t.Errorf("%s: NotCredentials %v", tc.in, e.NotCredentials)
		}
	}
	c := SocketIO(WithAuthError(func(code, _ string) bool { return code == "E401" }))
	ms, _ := c.Decode(Frame{Type: TextMessage, Data: []byte(`44{"message":"nope","data":{"code":"E401"}}`)})
	if ms[0].(Error).NotCredentials {
		t.Error("WithAuthError not used")
	}
	if !SocketIO().(UpdateReconnecter).UpdateByReconnect() || SocketIO(WithTokenUpdate(TokenUpdateEvent)).(UpdateReconnecter).UpdateByReconnect() {
		t.Error("token update mode")
	}
}
