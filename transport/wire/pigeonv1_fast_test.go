package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestPigeonV1EmitFastPathMatchesMarshal: the one-pass emit encoding is
// byte for byte the two json.Marshal calls it replaces, and every input it
// cannot copy as is takes the marshal path.
func TestPigeonV1EmitFastPathMatchesMarshal(t *testing.T) {
	cases := []Emit{
		{Event: "echo", Channel: "room", Data: json.RawMessage(`{"n":1}`), ID: "7", Key: "abc-1"},
		{Event: "echo"},
		{Event: "e", Data: json.RawMessage(`[1,"x",null,true]`)},
		{Event: "e", Channel: "c", Key: "k"},
		{Event: "ünï", Data: json.RawMessage(`1`)},
		{Event: "a<b", Data: json.RawMessage(`1`)},
		{Event: "q\"", ID: "1"},
		{Event: "e", Data: json.RawMessage(`{"a": "b c"}`)},
		{Event: "e", Data: json.RawMessage(`"<&>"`)},
		{Event: "e", Data: json.RawMessage(`"\u2028é"`)},
		{Event: "e", Data: json.RawMessage("\n{\"a\":1}\t")},
		{Event: "tab\t", Channel: "x\\y"},
	}
	fast := 0
	for _, op := range cases {
		p, err := json.Marshal(v1Emit{Event: op.Event, Channel: op.Channel, Data: op.Data, EmitID: op.Key})
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(v1Envelope{Type: "emit", ID: op.ID, Payload: p})
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := appendV1Emit(nil, op); ok {
			fast++
			if !bytes.Equal(b, want) {
				t.Errorf("%+v: fast path %s, marshal %s", op, b, want)
			}
		}
		frames, err := PigeonV1().Encode(op)
		if err != nil {
			t.Fatalf("%+v: %v", op, err)
		}
		if len(frames) != 1 || !bytes.Equal(frames[0].Data, want) {
			t.Errorf("%+v: Encode %q, want %s", op, frames, want)
		}
	}
	if fast != 4 {
		t.Errorf("%d of the cases took the fast path, want the 4 plain ones", fast)
	}
}

// TestPigeonV1PlainAckKeepsPayload: an ack decoded without its payload
// pass ({} or none) still carries what the server sent, and an ack with a
// position still has it.
func TestPigeonV1PlainAckKeepsPayload(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ack
	}{
		{`{"type":"ack","id":"3","payload":{}}`, Ack{ID: "3", Data: json.RawMessage(`{}`)}},
		{`{"type":"ack","id":"3"}`, Ack{ID: "3"}},
		{`{"type":"ack","id":"4","payload":{ "seq":2,"epoch":"e"}}`, Ack{ID: "4", Position: Position{Epoch: "e", Seq: 2}, Data: json.RawMessage(`{ "seq":2,"epoch":"e"}`)}},
	} {
		msgs, err := PigeonV1().Decode(Frame{Type: TextMessage, Data: []byte(tc.in)})
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		got, ok := msgs[0].(Ack)
		if len(msgs) != 1 || !ok {
			t.Fatalf("%s: %#v", tc.in, msgs)
		}
		if got.ID != tc.want.ID || got.Position != tc.want.Position || !bytes.Equal(got.Data, tc.want.Data) || (got.Data == nil) != (tc.want.Data == nil) {
			t.Errorf("%s: %#v, want %#v", tc.in, got, tc.want)
		}
	}
	if _, err := PigeonV1().Decode(Frame{Type: TextMessage, Data: []byte(`{"type":"ack","id":"5","payload":[1]}`)}); err == nil {
		t.Error("an ack whose payload is not an object decoded")
	}
}
