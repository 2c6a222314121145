package backend

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// closeGrace is how long a connection waits, after sending its close frame,
// for the client's close reply before dropping the TCP connection.
const closeGrace = time.Second

// recentIDs is how many frame ids a connection remembers to detect
// duplicates. The Backend answers each frame before reading the next, so
// "a duplicate among frames awaiting a reply" is taken to mean a duplicate
// among the last recentIDs ids.
const recentIDs = 1024

// wsConn is one websocket connection. Its goroutines: the reader (the HTTP
// handler's goroutine, which also handles each frame) and one writer that
// owns every data write. Other goroutines only queue frames (enqueue) or ask
// for a close (closeWith).
type wsConn struct {
	b       *Backend
	ws      *websocket.Conn
	session string
	out     chan []byte   // bounded: cfg.sendQueue; overflow closes with 4001
	drained chan struct{} // size 1: the writer took a frame from out

	closeOnce   sync.Once
	closing     chan struct{} // closed by the first closeWith
	closeCode   int           // written before closing is closed
	closeReason string
	closeSent   bool // gorilla already sent the close frame (1009)

	readerDone chan struct{}
	writerDone chan struct{}

	// Reader-goroutine state (also read by teardown after the reader ended).
	initialized bool
	who         principal
	rooms       map[string]*room
	ids         []string
	idPos       int
	idSet       map[string]struct{}
}

func (b *Backend) handleWS(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "bad_request", "websocket upgrade required")
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		writeError(w, http.StatusBadRequest, "bad_request", "the "+Subprotocol+" sub-protocol is required")
		return
	}
	b.connMu.Lock()
	if b.closed {
		b.connMu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "closed", "backend closed")
		return
	}
	b.wg.Add(1)
	b.connMu.Unlock()
	defer b.wg.Done()

	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the request
	}
	c := &wsConn{
		b:          b,
		ws:         ws,
		session:    "s_" + randomString(9),
		out:        make(chan []byte, b.cfg.sendQueue),
		drained:    make(chan struct{}, 1),
		closing:    make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		rooms:      make(map[string]*room),
		ids:        make([]string, recentIDs),
		idSet:      make(map[string]struct{}),
	}
	b.connMu.Lock()
	if b.closed {
		b.connMu.Unlock()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(b.cfg.writeTimeout))
		_ = ws.Close()
		return
	}
	b.conns[c] = struct{}{}
	b.connMu.Unlock()
	b.stats.wsOpen.Add(1)
	b.stats.wsTotal.Add(1)

	b.wg.Go(c.writeLoop)
	c.readLoop()
	close(c.readerDone)
	<-c.writerDone

	for _, rm := range c.rooms {
		rm.leave(c)
	}
	b.connMu.Lock()
	delete(b.conns, c)
	b.connMu.Unlock()
	b.cfg.logger.Debug("pigeon/examples/backend: websocket closed", "session", c.session, "code", c.closeCode, "reason", c.closeReason)
}

// closeWith asks for the connection to close with code and reason. Only the
// first call wins; it reports whether this one did. Safe for concurrent use.
func (c *wsConn) closeWith(code int, reason string) bool {
	return c.close(code, reason, false)
}

func (c *wsConn) close(code int, reason string, alreadySent bool) bool {
	won := false
	c.closeOnce.Do(func() {
		won = true
		if len(reason) > 120 { // a close frame's payload is at most 125 bytes
			reason = reason[:120]
		}
		c.closeCode, c.closeReason, c.closeSent = code, reason, alreadySent
		// Count before the writer can send the close frame.
		c.b.stats.closed(code)
		if code == CloseSlowConsumer {
			c.b.stats.slowConsumers.Add(1)
		}
		close(c.closing)
	})
	return won
}

func (c *wsConn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// enqueue queues a frame for the writer without blocking. A full queue
// closes the connection with 4001. It reports whether the frame was queued.
// Safe for concurrent use.
func (c *wsConn) enqueue(frame []byte) bool {
	if c.isClosing() {
		return false
	}
	select {
	case c.out <- frame:
		return true
	default:
		c.closeWith(CloseSlowConsumer, "slow consumer")
		return false
	}
}

// reply queues a reply to the client's own frame. Reader goroutine only: it
// waits for room instead of overflowing (backpressure: the client's next
// frame is not read meanwhile), so a client cannot overflow its queue with
// its own requests.
func (c *wsConn) reply(f outFrame) {
	frame := encodeFrame(f)
	if c.isClosing() {
		return
	}
	select {
	case c.out <- frame:
	case <-c.closing:
	}
}

// waitRoom waits until the queue has room for n frames (at most its
// capacity) or the connection is closing. Reader goroutine only; used before
// the frames queued without waiting (under a room's lock) in answer to the
// client's own join or emit.
func (c *wsConn) waitRoom(n int) {
	n = min(n, cap(c.out))
	for cap(c.out)-len(c.out) < n && !c.isClosing() {
		select {
		case <-c.drained:
		case <-c.closing:
		}
	}
}

func (c *wsConn) sendError(id, code, msg string) {
	c.reply(outFrame{Type: TypeError, ID: id, Payload: errorPayload{Code: code, Message: msg}})
}

func (c *wsConn) write(msg []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.b.cfg.writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, msg)
}

// writeLoop is the only data writer. It ends after sending the close frame
// and closing the TCP connection.
func (c *wsConn) writeLoop() {
	defer close(c.writerDone)
	tick := time.NewTicker(c.b.cfg.pingInterval)
	defer tick.Stop()
	failed := false
loop:
	for {
		if c.isClosing() { // closing wins over queued frames
			break
		}
		select {
		case <-c.closing:
			break loop
		case msg := <-c.out:
			select {
			case c.drained <- struct{}{}:
			default:
			}
			if err := c.write(msg); err != nil {
				c.closeWith(CloseAbnormal, "write: "+err.Error())
				failed = true
				break loop
			}
		case <-tick.C:
			hb := encodeFrame(outFrame{Type: TypePong, Payload: map[string]int64{"t": c.b.cfg.clock().UnixMilli()}})
			if err := c.write(hb); err != nil {
				c.closeWith(CloseAbnormal, "write: "+err.Error())
				failed = true
				break loop
			}
		}
	}
	code := c.closeCode
	// Flush what was queued before the close (an ack, an error frame), except
	// for a slow consumer, which is closed at once.
	if !failed && code != CloseSlowConsumer {
		for n := len(c.out); n > 0 && !failed; n-- {
			failed = c.write(<-c.out) != nil
		}
	}
	if !failed && code != CloseAbnormal && !c.closeSent {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, c.closeReason), time.Now().Add(c.b.cfg.writeTimeout))
	}
	if code != CloseAbnormal {
		// Wait for the client's close reply so that our close frame is not
		// lost to a TCP reset, but not forever.
		t := time.NewTimer(closeGrace)
		select {
		case <-c.readerDone:
		case <-t.C:
		}
		t.Stop()
	}
	c.b.stats.wsOpen.Add(-1) // before the client can see the TCP close
	_ = c.ws.Close()         // unblocks the reader if it still waits
}

// readLoop reads and handles frames until the first read error.
func (c *wsConn) readLoop() {
	cfg := &c.b.cfg
	c.ws.SetReadLimit(cfg.maxFrame)
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.initTimeout))
	c.ws.SetCloseHandler(func(int, string) error { return nil }) // the writer answers
	for {
		if c.initialized {
			// Idle limit, counted from when the server is ready to read.
			_ = c.ws.SetReadDeadline(time.Now().Add(cfg.pingInterval + cfg.idleGrace))
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		if c.isClosing() {
			continue // drain until the client's close reply
		}
		if mt != websocket.TextMessage {
			c.closeWith(CloseBadMessage, "binary frames are not supported")
			continue
		}
		c.handleFrame(data)
	}
}

func (c *wsConn) readFailed(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		code := ce.Code
		if code == websocket.CloseNoStatusReceived {
			code = CloseNormal
		}
		c.closeWith(code, "") // echo the client's close
	case errors.Is(err, websocket.ErrReadLimit):
		c.close(CloseTooBig, "frame too big", true) // gorilla sent the close frame
	case errors.As(err, &ne) && ne.Timeout():
		if c.initialized {
			c.closeWith(CloseIdle, "idle timeout")
		} else {
			c.closeWith(CloseInitTimeout, "init timeout")
		}
	default:
		c.closeWith(CloseAbnormal, "read: "+err.Error())
	}
}

var knownTypes = map[string]bool{
	TypeInit: true, TypeUpdate: true, TypeJoin: true, TypeLeave: true, TypeEmit: true, TypePing: true,
}

// decode decodes a frame payload; a bad one closes 4502.
func (c *wsConn) decode(f *inFrame, v any) bool {
	if len(f.Payload) == 0 {
		f.Payload = json.RawMessage("{}")
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		c.closeWith(CloseBadMessage, "bad "+f.Type+" payload")
		return false
	}
	return true
}

func (c *wsConn) handleFrame(data []byte) {
	var f inFrame
	if err := json.Unmarshal(data, &f); err != nil {
		c.closeWith(CloseBadMessage, "malformed frame")
		return
	}
	if !knownTypes[f.Type] {
		c.closeWith(CloseBadMessage, "unknown frame type")
		return
	}
	if f.Type == TypePing {
		c.b.stats.pings.Add(1)
		var p pingPayload
		if !c.decode(&f, &p) {
			return
		}
		c.reply(outFrame{Type: TypePong, Payload: p})
		return
	}
	if !c.initialized && f.Type != TypeInit {
		c.closeWith(CloseUnauthorized, f.Type+" before init_ack")
		return
	}
	if f.ID != "" && !c.rememberID(f.ID) {
		c.closeWith(CloseDuplicateID, "duplicate id")
		return
	}
	if f.Type == TypeInit {
		c.handleInit(&f)
		return
	}
	if f.Type != TypeUpdate && c.b.cfg.closeOnExpiry && !c.who.ghost && !c.b.cfg.clock().Before(c.who.expiresAt) {
		c.closeWith(CloseTokenExpired, "token expired")
		return
	}
	switch f.Type {
	case TypeUpdate:
		c.handleUpdate(&f)
	case TypeJoin:
		c.handleJoin(&f)
	case TypeLeave:
		c.handleLeave(&f)
	case TypeEmit:
		c.handleEmit(&f)
	}
}

// rememberID records id; it reports false if id is among the recent ones.
func (c *wsConn) rememberID(id string) bool {
	if _, dup := c.idSet[id]; dup {
		return false
	}
	if old := c.ids[c.idPos]; old != "" {
		delete(c.idSet, old)
	}
	c.ids[c.idPos] = id
	c.idPos = (c.idPos + 1) % len(c.ids)
	c.idSet[id] = struct{}{}
	return true
}

// headerToken returns the bearer token of a headers map (names are
// case-insensitive).
func headerToken(h map[string]string) string {
	for k, v := range h {
		if strings.EqualFold(k, "Authorization") {
			return bearer(v)
		}
	}
	return ""
}

func (c *wsConn) handleInit(f *inFrame) {
	b := c.b
	b.stats.initFrames.Add(1)
	if c.initialized {
		c.closeWith(CloseDuplicateID, "second init")
		return
	}
	var p headersPayload
	if !c.decode(f, &p) {
		return
	}
	who, st := b.lookupBearer(headerToken(p.Headers))
	switch st {
	case tokenExpired:
		c.closeWith(CloseTokenExpired, "token expired")
		return
	case tokenUnknown:
		c.closeWith(CloseUnauthorized, "unauthorized")
		return
	}
	c.who = who
	c.initialized = true
	b.stats.initAcks.Add(1) // counted before the client can see it
	c.reply(outFrame{Type: TypeInitAck, ID: f.ID, Payload: initAckPayload{
		Session:        c.session,
		PingIntervalMs: b.cfg.pingInterval.Milliseconds(),
		MaxFrame:       b.cfg.maxFrame,
	}})
}

func (c *wsConn) handleUpdate(f *inFrame) {
	b := c.b
	b.stats.updateFrames.Add(1)
	var p headersPayload
	if !c.decode(f, &p) {
		return
	}
	who, st := b.lookupBearer(headerToken(p.Headers))
	switch st {
	case tokenExpired:
		c.sendError(f.ID, ErrCodeUnauthorized, "token expired")
		return
	case tokenUnknown:
		c.sendError(f.ID, ErrCodeUnauthorized, "unknown token")
		return
	}
	c.who = who
	var left []string
	for name, rm := range c.rooms {
		if !mayJoin(who, name) {
			rm.leave(c)
			delete(c.rooms, name)
			left = append(left, name)
		}
	}
	slices.Sort(left)
	b.stats.updateAcks.Add(1)
	c.reply(outFrame{Type: TypeAck, ID: f.ID, Payload: updateAckPayload{Session: c.session, Left: left}})
}

func (c *wsConn) handleJoin(f *inFrame) {
	var p joinPayload
	if !c.decode(f, &p) {
		return
	}
	if !validChannel(p.Channel) {
		c.sendError(f.ID, ErrCodeBadRequest, "bad channel name")
		return
	}
	if !mayJoin(c.who, p.Channel) {
		c.sendError(f.ID, ErrCodeForbidden, "not allowed in "+p.Channel)
		return
	}
	rm := c.b.room(p.Channel)
	c.rooms[p.Channel] = rm
	c.waitRoom(c.b.cfg.historySize + 1) // the ack and the replay
	c.b.stats.joins.Add(1)
	c.b.join(rm, c, f.ID, p.Since)
}

func (c *wsConn) handleLeave(f *inFrame) {
	c.b.stats.leaves.Add(1)
	var p leavePayload
	if !c.decode(f, &p) {
		return
	}
	if rm, ok := c.rooms[p.Channel]; ok {
		rm.leave(c)
		delete(c.rooms, p.Channel)
	}
	c.reply(outFrame{Type: TypeAck, ID: f.ID, Payload: leaveAckPayload(p)})
}

func (c *wsConn) handleEmit(f *inFrame) {
	var p emitPayload
	if !c.decode(f, &p) {
		return
	}
	if p.Event == "" {
		c.sendError(f.ID, ErrCodeBadRequest, "event is required")
		return
	}
	rm, ok := c.rooms[p.Channel]
	if !ok {
		c.sendError(f.ID, ErrCodeForbidden, "not joined to "+p.Channel)
		return
	}
	c.waitRoom(1) // the sender's own event
	if p.EmitID != "" {
		c.handleEmitOnce(f, &p, rm)
		return
	}
	pos, err := c.publishEmit(&p, rm)
	if err != nil {
		c.sendError(f.ID, ErrCodeBadRequest, err.Error())
		return
	}
	c.ackEmit(f, &p, pos)
}

// publishEmit publishes an accepted emit into its room.
func (c *wsConn) publishEmit(p *emitPayload, rm *room) (Position, error) {
	if p.Channel == UniversalChannel && p.Event == ChatMessageEvent {
		var m struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(p.Data, &m) != nil || !validText(m.Text) {
			return Position{}, errors.New(`chat messages need data {"text": "..."} of 1 to 4096 bytes`)
		}
		msg, err := c.b.postChat(c.who, m.Text)
		return Position{Epoch: msg.Epoch, Seq: msg.Seq}, err
	}
	return c.b.publish(rm, p.Event, func(uint64) (json.RawMessage, error) { return p.Data, nil })
}

// ackEmit counts a published emit and acks it when it asked for a reply.
func (c *wsConn) ackEmit(f *inFrame, p *emitPayload, pos Position) {
	c.b.stats.emits.Add(1)
	c.b.observeEmit(c.who, p)
	if f.ID != "" { // an emit without id wants no reply (socket.md)
		c.reply(outFrame{Type: TypeAck, ID: f.ID, Payload: emitAckPayload{Channel: p.Channel, Epoch: pos.Epoch, Seq: pos.Seq}})
	}
}
