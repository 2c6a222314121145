package backend

import (
	"net/http"
	"testing"
)

func TestGhostRegisterAndLogin(t *testing.T) {
	b, srv := newServer(t)
	r := call(t, srv, "POST", "/chat/ghost/register", "", map[string]string{"name": "casper"})
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var g Ghost
	r.data(t, &g)
	if g.GhostID == "" || g.Token == "" || g.Name != "casper" {
		t.Fatalf("ghost %+v", g)
	}
	r = call(t, srv, "POST", "/chat/ghost/login", "", map[string]string{"ghostId": g.GhostID})
	var again Ghost
	r.data(t, &again)
	if r.status != http.StatusOK || again.GhostID != g.GhostID || again.Token == "" || again.Token == g.Token {
		t.Fatalf("login: %d %+v", r.status, again)
	}
	// Both tokens work; a ghost token is not an access token for /me.
	for _, tok := range []string{g.Token, again.Token} {
		if r := call(t, srv, "GET", "/echo", tok, nil); r.status != http.StatusOK {
			t.Fatalf("/echo with ghost token: %d", r.status)
		}
		if r := call(t, srv, "GET", "/me", tok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("/me with ghost token: %d", r.status)
		}
	}
	cases := []struct {
		name       string
		path       string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"register empty name", "/chat/ghost/register", map[string]string{"name": " "}, 400, "bad_request"},
		{"register not json", "/chat/ghost/register", "{", 400, "bad_request"},
		{"login unknown ghost", "/chat/ghost/login", map[string]string{"ghostId": "g_nope"}, 401, "invalid_credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, srv, "POST", tc.path, "", tc.body)
			if r.status != tc.wantStatus || r.errCode(t) != tc.wantCode {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	if st := b.Stats(); st.GhostRegistrations != 1 {
		t.Fatalf("registrations %d", st.GhostRegistrations)
	}
}

func TestPostMessageErrors(t *testing.T) {
	b, srv := newServer(t)
	g, _ := b.RegisterGhost("g")
	expired, _ := b.IssueTokens("u")
	b.ExpireAccessToken(expired.AccessToken)
	cases := []struct {
		name, method, path, token string
		body                      any
		wantStatus                int
		wantCode                  string
	}{
		{"anonymous post", "POST", "/chat/ghost/messages", "", map[string]string{"text": "hi"}, 401, "invalid_token"},
		{"unknown token", "POST", "/chat/ghost/messages", "nope", map[string]string{"text": "hi"}, 401, "invalid_token"},
		{"expired user token", "POST", "/chat/ghost/messages", expired.AccessToken, map[string]string{"text": "hi"}, 401, "invalid_token"},
		{"empty text", "POST", "/chat/ghost/messages", g.Token, map[string]string{"text": ""}, 400, "bad_request"},
		{"bad since", "GET", "/chat/ghost/messages?since=-1", "", nil, 400, "bad_request"},
		{"bad token on read", "GET", "/chat/ghost/messages", "nope", nil, 401, "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, srv, tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.wantStatus || r.errCode(t) != tc.wantCode {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	if st := b.Stats(); st.ChatMessages != 0 {
		t.Fatalf("messages stored: %d", st.ChatMessages)
	}
}

// TestUniversalRoomIsShared: a message posted over HTTP by a ghost arrives
// over websocket at a user, and one emitted over websocket by the user is
// listed over HTTP.
func TestUniversalRoomIsShared(t *testing.T) {
	b, srv := newServer(t)
	user := signup(t, srv, "chat@x")
	g, _ := b.RegisterGhost("casper")

	ws := dial(t, srv)
	ws.init(user.AccessToken)
	join := ws.join("j", UniversalChannel, nil)

	r := call(t, srv, "POST", "/chat/ghost/messages", g.Token, map[string]string{"text": "boo"})
	if r.status != http.StatusCreated {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	var posted ChatMessage
	r.data(t, &posted)
	if posted.Text != "boo" || posted.From != g.GhostID || posted.FromName != "casper" || posted.Kind != "ghost" || posted.Seq != 1 || posted.Epoch != join.Epoch {
		t.Fatalf("posted %+v", posted)
	}
	ev := ws.event()
	var got ChatMessage
	if err := jsonUnmarshal(ev.Data, &got); err != nil {
		t.Fatal(err)
	}
	if ev.Channel != UniversalChannel || ev.Event != ChatMessageEvent || ev.Seq != 1 || got != posted {
		t.Fatalf("event %+v data %+v, want %+v", ev, got, posted)
	}

	// A ghost on websocket and the user emit; both show up over HTTP.
	gws := dial(t, srv)
	gws.init(g.Token)
	gws.join("j", UniversalChannel, nil)
	ws.send(TypeEmit, "e1", map[string]any{"event": ChatMessageEvent, "channel": UniversalChannel, "data": map[string]string{"text": "hello ghost"}})
	ws.event()
	var ack emitAckPayload
	ws.expect(TypeAck, "e1").decode(t, &ack)
	if ack.Seq != 2 {
		t.Fatalf("emit ack %+v", ack)
	}
	if ev := gws.event(); ev.Seq != 2 {
		t.Fatalf("ghost got %+v", ev)
	}
	// A chat message without text is refused and not stored.
	ws.send(TypeEmit, "e2", map[string]any{"event": ChatMessageEvent, "channel": UniversalChannel, "data": map[string]int{"n": 1}})
	ws.expect(TypeError, "e2")
	// Other events in the room are broadcast but are not chat messages.
	ws.send(TypeEmit, "e3", map[string]any{"event": "typing", "channel": UniversalChannel, "data": true})
	ws.event()
	ws.expect(TypeAck, "e3")

	r = call(t, srv, "GET", "/chat/ghost/messages?since=1", "", nil)
	var list []ChatMessage
	r.data(t, &list)
	if len(list) != 1 || list[0].Text != "hello ghost" || list[0].From != user.UID || list[0].Kind != "user" || list[0].FromName != "chat@x" || list[0].Seq != 2 {
		t.Fatalf("messages since 1: %+v", list)
	}
	if e := r.header.Get("X-Pigeon-Epoch"); e != join.Epoch {
		t.Fatalf("epoch header %q", e)
	}
	r = call(t, srv, "GET", "/chat/ghost/messages", g.Token, nil)
	list = nil
	r.data(t, &list)
	if len(list) != 2 || list[0] != posted {
		t.Fatalf("all messages: %+v", list)
	}
	if st := b.Stats(); st.ChatMessages != 2 {
		t.Fatalf("ChatMessages %d", st.ChatMessages)
	}
}
