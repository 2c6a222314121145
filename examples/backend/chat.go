package backend

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ChatMessageEvent is the event name of chat messages in UniversalChannel.
const ChatMessageEvent = "message"

// maxText bounds a chat message's text, in bytes.
const maxText = 4096

// ChatMessage is a message of the universal chat room: the `data` of a
// "message" event in chat:universal, an element of GET
// /chat/ghost/messages and the answer of POST /chat/ghost/messages.
type ChatMessage struct {
	ID       string    `json:"id"`
	Seq      uint64    `json:"seq"`   // the event's seq in chat:universal
	Epoch    string    `json:"epoch"` // the room's epoch when it was posted
	Text     string    `json:"text"`
	From     string    `json:"from"`     // uid or ghost id
	FromName string    `json:"fromName"` // email or ghost name
	Kind     string    `json:"kind"`     // "user" or "ghost"
	At       time.Time `json:"at"`       // by the injected clock, UTC
}

// Ghost is a ghost's credentials: the `data` of /chat/ghost/register and
// /chat/ghost/login answers. A ghost token is a bearer token that never
// expires and has no refresh token.
type Ghost struct {
	GhostID string `json:"ghostId"`
	Name    string `json:"name"`
	Token   string `json:"token"`
}

func validText(s string) bool {
	return s != "" && len(s) <= maxText && utf8.ValidString(s)
}

// postChat stores a chat message in chat:universal and broadcasts it.
func (b *Backend) postChat(who principal, text string) (ChatMessage, error) {
	kind := "user"
	if who.ghost {
		kind = "ghost"
	}
	rm := b.room(UniversalChannel)
	var msg ChatMessage
	_, err := b.publish(rm, ChatMessageEvent, func(seq uint64) (json.RawMessage, error) {
		msg = ChatMessage{
			ID: "m_" + randomString(9), Seq: seq, Epoch: rm.epoch, // publish holds rm.mu
			Text: text, From: who.id, FromName: who.name, Kind: kind, At: b.cfg.clock().UTC(),
		}
		data, err := json.Marshal(msg)
		if err == nil {
			b.stats.chatMessages.Add(1) // counted before any member can see it
		}
		return data, err
	})
	return msg, err
}

// RegisterGhost registers a ghost as POST /chat/ghost/register does. Error:
// ErrInvalidInput for an empty or too long (over 64 bytes) name. Safe for
// concurrent use.
func (b *Backend) RegisterGhost(name string) (Ghost, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		return Ghost{}, fmt.Errorf("%w: ghost name must be 1 to 64 bytes", ErrInvalidInput)
	}
	s := &b.auth
	g := &ghost{id: "g_" + randomString(9), name: name}
	tok := randomString(32)
	s.mu.Lock()
	s.ghosts[g.id] = g
	s.ghostTokens[tok] = g.id
	s.mu.Unlock()
	b.stats.ghostRegistrations.Add(1)
	return Ghost{GhostID: g.id, Name: name, Token: tok}, nil
}

func (b *Backend) handleGhostRegister(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	g, err := b.RegisterGhost(body.Name)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "name must be 1 to 64 bytes")
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

func (b *Backend) handleGhostLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		GhostID string `json:"ghostId"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s := &b.auth
	tok := randomString(32)
	s.mu.Lock()
	g, ok := s.ghosts[body.GhostID]
	if ok {
		s.ghostTokens[tok] = g.id
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_credentials", "unknown ghost")
		return
	}
	writeJSON(w, http.StatusOK, Ghost{GhostID: g.id, Name: g.name, Token: tok})
}

func (b *Backend) handlePostMessage(w http.ResponseWriter, r *http.Request) {
	who, ok := b.authenticate(w, r, true)
	if !ok {
		return
	}
	var body struct {
		Text string `json:"text"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if !validText(body.Text) {
		writeError(w, http.StatusBadRequest, "bad_request", "text must be 1 to 4096 bytes of UTF-8")
		return
	}
	msg, err := b.postChat(who, body.Text)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, msg)
}

// handleGetMessages lists the chat messages after ?since=<seq> still in
// history. Anonymous reads are allowed; a present but invalid bearer token is
// refused with 401.
func (b *Backend) handleGetMessages(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		if _, ok := b.authenticate(w, r, true); !ok {
			return
		}
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "since must be a non-negative integer")
			return
		}
		since = v
	}
	epoch, entries := b.room(UniversalChannel).since(since, ChatMessageEvent)
	msgs := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		msgs[i] = e.data
	}
	w.Header().Set("X-Pigeon-Epoch", epoch)
	writeJSON(w, http.StatusOK, msgs)
}
