package backend

import (
	"sync"
	"testing"
)

// An emit resent with the same emitId — on another connection of the same
// user, as a client does after a reconnect — is acked with the first
// copy's position and not published again; another user's emitId of the
// same value is its own.
func TestEmitDedupe_ResentEmitIDPublishedOnce(t *testing.T) {
	var mu sync.Mutex
	var seen []EmitRecord
	b, srv := newServer(t, WithEmitObserver(func(r EmitRecord) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
	}))
	tok := signup(t, srv, "dedupe@example.com")
	other := signup(t, srv, "other@example.com")
	emit := func(w *wsClient, id string) emitAckPayload {
		t.Helper()
		w.send(TypeEmit, id, map[string]any{"event": "note", "channel": "room:d", "data": 7, "emitId": "stream-1"})
		var ack emitAckPayload
		for {
			f := w.read()
			if f.Type == TypeEvent {
				continue // its own event
			}
			if f.Type != TypeAck || f.ID != id {
				t.Fatalf("got %s %q %s, want the ack of %s", f.Type, f.ID, f.Payload, id)
			}
			f.decode(t, &ack)
			return ack
		}
	}
	join := func(token string) *wsClient {
		w := dial(t, srv)
		w.init(token)
		w.join("j", "room:d", nil)
		return w
	}

	first := emit(join(tok.AccessToken), "e1")
	again := emit(join(tok.AccessToken), "e9") // a new connection, a new frame id, the same emitId
	if first.Duplicate || !again.Duplicate || again.Seq != first.Seq || again.Epoch != first.Epoch {
		t.Fatalf("first ack %+v, resent ack %+v: want the resend acked as a duplicate at the first position", first, again)
	}
	mine := emit(join(other.AccessToken), "e1")
	if mine.Duplicate || mine.Seq == first.Seq {
		t.Fatalf("another user's emitId was taken for a duplicate: %+v", mine)
	}
	st := b.Stats()
	mu.Lock()
	defer mu.Unlock()
	if st.Emits != 2 || st.EmitDuplicates != 1 || len(seen) != 2 {
		t.Fatalf("Emits %d, EmitDuplicates %d, observed %d; want 2 published, 1 duplicate", st.Emits, st.EmitDuplicates, len(seen))
	}
}
