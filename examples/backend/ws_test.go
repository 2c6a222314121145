package backend

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestWSInitAck(t *testing.T) {
	b, srv := newServer(t, WithPingInterval(7*time.Second), WithMaxFrame(4096))
	tok, _ := b.IssueTokens("u1")
	g, _ := b.RegisterGhost("casper")
	for _, token := range []string{tok.AccessToken, g.Token} {
		c := dial(t, srv)
		c.send(TypePing, "", map[string]int{"t": 42}) // allowed before init
		if f := c.expect(TypePong, ""); string(f.Payload) != `{"t":42}` {
			t.Fatalf("pong payload %s", f.Payload)
		}
		ack := c.init(token)
		if ack.Session == "" || ack.PingIntervalMs != 7000 || ack.MaxFrame != 4096 {
			t.Fatalf("init_ack = %+v", ack)
		}
	}
	st := b.Stats()
	if st.InitFrames != 2 || st.InitAcks != 2 || st.WSTotal != 2 || st.WSOpen != 2 || st.Pings != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSHandshakeRefusals(t *testing.T) {
	b, srv := newServer(t)
	if s := dialStatus(t, srv, nil); s != http.StatusBadRequest {
		t.Fatalf("without sub-protocol: %d", s)
	}
	if s := dialStatus(t, srv, []string{"other"}); s != http.StatusBadRequest {
		t.Fatalf("wrong sub-protocol: %d", s)
	}
	if r := call(t, srv, "GET", "/ws", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("plain GET /ws: %d", r.status)
	}
	b.Close()
	if s := dialStatus(t, srv, []string{Subprotocol}); s != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", s)
	}
}

func TestWSCloseCodes(t *testing.T) {
	big := `{"type":"ping","payload":{"t":"` + strings.Repeat("x", 2048) + `"}}`
	cases := []struct {
		name string
		opts []Option
		// run drives a fresh connection; token is a valid access token,
		// expired an expired one.
		run  func(c *wsClient, token, expired string)
		want int
	}{
		{"init timeout", []Option{WithInitTimeout(50 * time.Millisecond)}, func(c *wsClient, _, _ string) {}, CloseInitTimeout},
		{"pings do not extend the init timeout", []Option{WithInitTimeout(100 * time.Millisecond)}, func(c *wsClient, _, _ string) {
			c.send(TypePing, "", map[string]int{"t": 1})
			c.expect(TypePong, "")
		}, CloseInitTimeout},
		{"expired token at init", nil, func(c *wsClient, _, expired string) {
			c.send(TypeInit, "i", authHeaders(expired))
		}, CloseTokenExpired},
		{"unknown token", nil, func(c *wsClient, _, _ string) { c.send(TypeInit, "i", authHeaders("nope")) }, CloseUnauthorized},
		{"no authorization header", nil, func(c *wsClient, _, _ string) {
			c.send(TypeInit, "i", map[string]any{"headers": map[string]string{}})
		}, CloseUnauthorized},
		{"join before init", nil, func(c *wsClient, _, _ string) {
			c.send(TypeJoin, "j", map[string]string{"channel": "room:1"})
		}, CloseUnauthorized},
		{"update before init", nil, func(c *wsClient, token, _ string) { c.send(TypeUpdate, "u", authHeaders(token)) }, CloseUnauthorized},
		{"malformed json", nil, func(c *wsClient, _, _ string) { c.sendRaw(`{"type":`) }, CloseBadMessage},
		{"not an object", nil, func(c *wsClient, _, _ string) { c.sendRaw(`[1,2]`) }, CloseBadMessage},
		{"unknown type", nil, func(c *wsClient, token, _ string) {
			c.init(token)
			c.send("subscribe", "x", nil)
		}, CloseBadMessage},
		{"bad payload", nil, func(c *wsClient, token, _ string) {
			c.init(token)
			c.send(TypeJoin, "j", "room:1")
		}, CloseBadMessage},
		{"binary frame", nil, func(c *wsClient, _, _ string) {
			if err := c.c.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"ping"}`)); err != nil {
				c.t.Fatal(err)
			}
		}, CloseBadMessage},
		{"second init", nil, func(c *wsClient, token, _ string) {
			c.init(token)
			c.send(TypeInit, "i2", authHeaders(token))
		}, CloseDuplicateID},
		{"duplicate id", nil, func(c *wsClient, token, _ string) {
			c.init(token)
			c.join("j1", "room:1", nil)
			c.send(TypeLeave, "j1", map[string]string{"channel": "room:1"})
		}, CloseDuplicateID},
		{"frame too big", []Option{WithMaxFrame(1024)}, func(c *wsClient, token, _ string) {
			c.init(token)
			c.sendRaw(big)
		}, CloseTooBig},
		{"client closes", nil, func(c *wsClient, token, _ string) {
			c.init(token)
			_ = c.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "bye"))
		}, 4321},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, srv := newServer(t, tc.opts...)
			tok, _ := b.IssueTokens("u1")
			old, _ := b.IssueTokens("u1")
			b.ExpireAccessToken(old.AccessToken)
			c := dial(t, srv)
			tc.run(c, tok.AccessToken, old.AccessToken)
			c.expectClose(tc.want)
			// The server survives and serves a new connection.
			c2 := dial(t, srv)
			c2.init(tok.AccessToken)
			if got := b.Stats().Closes[tc.want]; got != 1 {
				t.Fatalf("Closes[%d] = %d", tc.want, got)
			}
		})
	}
}

func TestWSCloseOnExpiry(t *testing.T) {
	clock := newFakeClock()
	b, srv := newServer(t, WithClock(clock.Now), WithAccessTTL(time.Minute), WithCloseOnExpiry())
	tok, _ := b.IssueTokens("u1")
	c := dial(t, srv)
	c.init(tok.AccessToken)
	c.join("j1", "room:1", nil)
	clock.Advance(time.Minute)
	c.send(TypeJoin, "j2", map[string]string{"channel": "room:2"})
	c.expectClose(CloseTokenExpired)
}

func TestWSIdleClientIsClosed(t *testing.T) {
	b, srv := newServer(t, WithPingInterval(20*time.Millisecond), WithIdleGrace(30*time.Millisecond))
	tok, _ := b.IssueTokens("u1")
	c := dial(t, srv)
	c.init(tok.AccessToken)
	c.expectClose(CloseIdle) // heartbeat pongs may arrive first; the client never writes
}

func TestWSUpdate(t *testing.T) {
	b, srv := newServer(t)
	tok, _ := b.IssueTokens("u1")
	c := dial(t, srv)
	ack := c.init(tok.AccessToken)
	c.join("j1", "user:u1", nil)

	fresh, _ := b.IssueTokens("u1")
	c.send(TypeUpdate, "u1", authHeaders(fresh.AccessToken))
	var up updateAckPayload
	c.expect(TypeAck, "u1").decode(t, &up)
	if up.Session != ack.Session || len(up.Left) != 0 {
		t.Fatalf("update ack %+v", up)
	}

	expired, _ := b.IssueTokens("u1")
	b.ExpireAccessToken(expired.AccessToken)
	for i, token := range []string{"garbage", expired.AccessToken} {
		id := []string{"u2", "u3"}[i]
		c.send(TypeUpdate, id, authHeaders(token))
		var e errorPayload
		c.expect(TypeError, id).decode(t, &e)
		if e.Code != ErrCodeUnauthorized || e.Retryable {
			t.Fatalf("error %+v", e)
		}
	}
	// Still joined on the same connection: a server event arrives.
	if _, err := b.Publish("user:u1", "note", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if ev := c.event(); ev.Channel != "user:u1" || ev.Event != "note" || ev.Seq != 1 {
		t.Fatalf("event %+v", ev)
	}

	// Switching to a ghost leaves the user's private room.
	g, _ := b.RegisterGhost("g")
	c.send(TypeUpdate, "u4", authHeaders(g.Token))
	up = updateAckPayload{}
	c.expect(TypeAck, "u4").decode(t, &up)
	if len(up.Left) != 1 || up.Left[0] != "user:u1" {
		t.Fatalf("update to ghost ack %+v", up)
	}
	st := b.Stats()
	if st.UpdateFrames != 4 || st.UpdateAcks != 2 || st.WSTotal != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSAccessControl(t *testing.T) {
	b, srv := newServer(t)
	tok, _ := b.IssueTokens("u1")
	g, _ := b.RegisterGhost("g")
	cases := []struct {
		name, token, channel, wantCode string
	}{
		{"user in own room", tok.AccessToken, "user:u1", ""},
		{"user in another's room", tok.AccessToken, "user:u2", ErrCodeForbidden},
		{"ghost in a user room", g.Token, "user:u1", ErrCodeForbidden},
		{"ghost in universal chat", g.Token, UniversalChannel, ""},
		{"user in universal chat", tok.AccessToken, UniversalChannel, ""},
		{"bad channel name", tok.AccessToken, "has space", ErrCodeBadRequest},
		{"empty channel name", tok.AccessToken, "", ErrCodeBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv)
			c.init(tc.token)
			c.send(TypeJoin, "j", map[string]string{"channel": tc.channel})
			f := c.read()
			if tc.wantCode == "" {
				if f.Type != TypeAck || f.ID != "j" {
					t.Fatalf("got %s %s", f.Type, f.Payload)
				}
				return
			}
			var e errorPayload
			if f.Type != TypeError || f.ID != "j" {
				t.Fatalf("got %s %s", f.Type, f.Payload)
			}
			f.decode(t, &e)
			if e.Code != tc.wantCode {
				t.Fatalf("error %+v, want %s", e, tc.wantCode)
			}
		})
	}
}

func TestWSEmitBroadcast(t *testing.T) {
	b, srv := newServer(t)
	ta, _ := b.IssueTokens("a")
	tb, _ := b.IssueTokens("b")
	a, c := dial(t, srv), dial(t, srv)
	a.init(ta.AccessToken)
	c.init(tb.AccessToken)
	ja := a.join("j", "room:1", nil)
	c.join("j", "room:1", nil)

	a.send(TypeEmit, "e1", map[string]any{"event": "hello", "channel": "room:1", "data": map[string]int{"x": 1}})
	ev := a.event()
	var ack emitAckPayload
	a.expect(TypeAck, "e1").decode(t, &ack)
	if ev.Seq != 1 || ev.Epoch != ja.Epoch || ev.Event != "hello" || string(ev.Data) != `{"x":1}` {
		t.Fatalf("sender's event %+v", ev)
	}
	if ack.Seq != 1 || ack.Epoch != ja.Epoch || ack.Channel != "room:1" {
		t.Fatalf("emit ack %+v", ack)
	}
	if got := c.event(); got.Seq != 1 || string(got.Data) != `{"x":1}` {
		t.Fatalf("other member's event %+v", got)
	}

	// Not joined → forbidden; after leave → forbidden too.
	a.send(TypeEmit, "e2", map[string]any{"event": "hello", "channel": "room:2"})
	var e errorPayload
	a.expect(TypeError, "e2").decode(t, &e)
	if e.Code != ErrCodeForbidden {
		t.Fatalf("error %+v", e)
	}
	a.send(TypeLeave, "l1", map[string]string{"channel": "room:1"})
	a.expect(TypeAck, "l1")
	a.send(TypeEmit, "e3", map[string]any{"event": "hello", "channel": "room:1"})
	a.expect(TypeError, "e3")
	// c is alone now and still receives.
	c.send(TypeEmit, "e4", map[string]any{"event": "solo", "channel": "room:1"})
	if got := c.event(); got.Seq != 2 || got.Event != "solo" || string(got.Data) != "null" {
		t.Fatalf("solo event %+v", got)
	}
	c.expect(TypeAck, "e4")
	if extra := a.barrier("a"); len(extra) != 0 {
		t.Fatalf("left member got %v", extra)
	}
	st := b.Stats()
	if st.Emits != 2 || st.Joins != 2 || st.Leaves != 1 || st.EventsSent != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSRejoinRecovery(t *testing.T) {
	cases := []struct {
		name          string
		history       int
		published     int
		since         func(first joinAckPayload) Position
		restart       bool
		wantRecovered bool
		wantReplay    []uint64
	}{
		{"missed events in history", 8, 5, func(f joinAckPayload) Position { return Position{f.Epoch, 2} }, false, true, []uint64{3, 4, 5}},
		{"nothing missed", 8, 5, func(f joinAckPayload) Position { return Position{f.Epoch, 5} }, false, true, nil},
		{"from the very start", 8, 5, func(f joinAckPayload) Position { return Position{f.Epoch, 0} }, false, true, []uint64{1, 2, 3, 4, 5}},
		{"history exceeded", 3, 6, func(f joinAckPayload) Position { return Position{f.Epoch, 2} }, false, false, nil},
		{"oldest kept is the next", 3, 6, func(f joinAckPayload) Position { return Position{f.Epoch, 3} }, false, true, []uint64{4, 5, 6}},
		{"other epoch", 8, 5, func(f joinAckPayload) Position { return Position{"not-" + f.Epoch, 2} }, false, false, nil},
		{"seq ahead of the room", 8, 5, func(f joinAckPayload) Position { return Position{f.Epoch, 9} }, false, false, nil},
		{"room restarted", 8, 5, func(f joinAckPayload) Position { return Position{f.Epoch, 2} }, true, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, srv := newServer(t, WithHistorySize(tc.history))
			tok, _ := b.IssueTokens("u")
			c := dial(t, srv)
			c.init(tok.AccessToken)
			first := c.join("j1", "room:r", nil)
			if first.Recovered || first.Seq != 0 {
				t.Fatalf("first join %+v", first)
			}
			c.send(TypeLeave, "l1", map[string]string{"channel": "room:r"})
			c.expect(TypeAck, "l1")
			for i := range tc.published {
				if _, err := b.Publish("room:r", "n", i+1); err != nil {
					t.Fatal(err)
				}
			}
			if tc.restart {
				if err := b.RestartRoom("room:r"); err != nil {
					t.Fatal(err)
				}
			}
			since := tc.since(first)
			c2 := dial(t, srv) // a reconnect: a fresh connection
			c2.init(tok.AccessToken)
			ack := c2.join("j1", "room:r", &since)
			cur, _ := b.RoomPosition("room:r")
			if ack.Recovered != tc.wantRecovered || ack.Epoch != cur.Epoch {
				t.Fatalf("ack %+v, want recovered %v in epoch %s", ack, tc.wantRecovered, cur.Epoch)
			}
			wantSeq := cur.Seq
			if tc.wantRecovered {
				wantSeq = since.Seq
			}
			if ack.Seq != wantSeq {
				t.Fatalf("ack seq %d, want %d", ack.Seq, wantSeq)
			}
			var got []uint64
			for _, f := range c2.barrier("end") {
				var ev eventPayload
				f.decode(t, &ev)
				if f.Type != TypeEvent || string(ev.Data) != itoa(ev.Seq) {
					t.Fatalf("replayed frame %s %s", f.Type, f.Payload)
				}
				got = append(got, ev.Seq)
			}
			if !equalSeqs(got, tc.wantReplay) {
				t.Fatalf("replayed %v, want %v", got, tc.wantReplay)
			}
			if st := b.Stats(); st.Replayed != int64(len(tc.wantReplay)) {
				t.Fatalf("Replayed = %d", st.Replayed)
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCloseAllSockets(t *testing.T) {
	for _, code := range []int{CloseServerRestart, CloseGoingAway} {
		t.Run(itoa(uint64(code)), func(t *testing.T) {
			b, srv := newServer(t)
			tok, _ := b.IssueTokens("u")
			c1, c2 := dial(t, srv), dial(t, srv)
			c1.init(tok.AccessToken)
			c2.init(tok.AccessToken)
			if n := b.CloseAllSockets(code, "restart"); n != 2 {
				t.Fatalf("closed %d", n)
			}
			c1.expectClose(code)
			c2.expectClose(code)
			c3 := dial(t, srv) // still accepting
			c3.init(tok.AccessToken)
			if st := b.Stats(); st.Closes[code] != 2 || st.WSTotal != 3 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestCloseEndsEverything(t *testing.T) {
	b, srv := newServer(t)
	tok, _ := b.IssueTokens("u")
	var clients []*wsClient
	for range 3 {
		c := dial(t, srv)
		c.init(tok.AccessToken)
		c.join("j", UniversalChannel, nil)
		clients = append(clients, c)
	}
	silent := dial(t, srv) // never reads: Close must not wait on it forever
	silent.init(tok.AccessToken)
	b.Close()
	if st := b.Stats(); st.WSOpen != 0 || st.Closes[CloseGoingAway] != 4 {
		t.Fatalf("after Close: %+v", st)
	}
	for _, c := range clients {
		c.expectClose(CloseGoingAway)
	}
	b.Close() // idempotent
	// goleak in TestMain checks that no goroutine is left.
}

func TestSlowConsumerIsClosed(t *testing.T) {
	b, srv := newServer(t, WithSendQueue(2))
	tok, _ := b.IssueTokens("u")
	c := dial(t, srv)
	c.init(tok.AccessToken)
	c.join("j", "room:slow", nil)
	payload := strings.Repeat("x", 32<<10)
	// The client reads nothing: the kernel buffers fill, then the queue.
	for i := 0; b.Stats().SlowConsumers == 0; i++ {
		if i == 100000 {
			t.Fatal("queue never overflowed")
		}
		if _, err := b.Publish("room:slow", "big", payload); err != nil {
			t.Fatal(err)
		}
	}
	c.expectClose(CloseSlowConsumer)
}

// TestFloodingClientIsThrottledNotClosed: a client emitting far more than
// its queue holds, while reading, is slowed by backpressure instead of
// being closed as a slow consumer.
func TestFloodingClientIsThrottledNotClosed(t *testing.T) {
	for _, queue := range []int{1, 2, 8} {
		t.Run(itoa(uint64(queue)), func(t *testing.T) {
			b, srv := newServer(t, WithSendQueue(queue))
			tok, _ := b.IssueTokens("u")
			c := dial(t, srv)
			c.init(tok.AccessToken)
			c.join("j", "room:flood", nil)
			const n = 200
			errc := make(chan error, 1)
			go func() {
				for i := range n {
					if err := c.c.WriteJSON(map[string]any{"type": "emit", "id": "e" + itoa(uint64(i)), "payload": map[string]any{"event": "m", "channel": "room:flood"}}); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for range n {
				c.expect(TypeEvent, "")
				c.read() // the ack
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if st := b.Stats(); st.SlowConsumers != 0 || st.Emits != n {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestStress_ConcurrentEmitters(t *testing.T) {
	b, srv := newServer(t, WithSendQueue(4096)) // ordering under concurrency, not slow consumers
	const clients, each = 6, 40
	var conns []*wsClient
	for i := range clients {
		tok, _ := b.IssueTokens("u" + itoa(uint64(i)))
		c := dial(t, srv)
		c.init(tok.AccessToken)
		c.join("j", "room:stress", nil)
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for i := range each {
				if err := c.c.WriteJSON(map[string]any{"type": "emit", "id": "e" + itoa(uint64(i)), "payload": map[string]any{"event": "m", "channel": "room:stress", "data": i}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Each client reads all events (in seq order) and its own acks.
	results := make(chan error, clients)
	for _, c := range conns {
		wg.Go(func() {
			var next uint64 = 1
			acks := 0
			for next <= clients*each || acks < each {
				_ = c.c.SetReadDeadline(time.Now().Add(safety))
				var f frame
				if err := c.c.ReadJSON(&f); err != nil {
					results <- err
					return
				}
				switch f.Type {
				case TypeEvent:
					var ev eventPayload
					if err := jsonUnmarshal(f.Payload, &ev); err != nil || ev.Seq != next {
						results <- errSeq(ev.Seq, next)
						return
					}
					next++
				case TypeAck:
					acks++
				}
			}
			results <- nil
		})
	}
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Emits != clients*each || st.EventsSent != clients*clients*each {
		t.Fatalf("stats emits %d events %d", st.Emits, st.EventsSent)
	}
}

func TestBadFramesNeverCrash(t *testing.T) {
	b, srv := newServer(t)
	tok, _ := b.IssueTokens("u")
	garbage := []string{
		``, `null`, `"str"`, `{}`, `{"type":null}`, `{"type":"init","payload":[1]}`,
		`{"type":"init","payload":{"headers":"x"}}`, `{"type":"init","id":7}`,
		`{"type":"ping","payload":{"t":` + strings.Repeat("[", 5000) + `}}`, "\xff\xfe",
	}
	for _, g := range garbage {
		c := dial(t, srv)
		c.sendRaw(g)
		c.expectClose(CloseBadMessage)
	}
	c := dial(t, srv)
	c.init(tok.AccessToken)
	c.sendRaw(`{"type":"emit","id":"e1","payload":{"channel":"x"}}`)
	c.expect(TypeError, "e1")
	c.sendRaw(`{"type":"emit","id":"e2","payload":{"event":"x","channel":"room:none"}}`)
	c.expect(TypeError, "e2")
}
