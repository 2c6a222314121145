package actors

// SocketConn: the requests of its protocol (messages/socket.go) and the
// bookkeeping of the replies they wait for.

import (
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

func (s *socketConn) onConnect(ctx actor.Context) {
	switch s.state {
	case messages.SocketClosed:
		s.sockRespond(ctx, ctx.Sender(), messages.ErrClosed)
		return
	case messages.SocketFailed:
		if err := s.rawCfg.Validate(); err != nil {
			s.sockRespond(ctx, ctx.Sender(), s.termErr)
			return
		}
		if s.cfg.FailFast && !s.everUp {
			// The first attempt (an eager actor's, made before this
			// Connect arrived) failed: that is the answer.
			s.sockRespond(ctx, ctx.Sender(), s.termErr)
			return
		}
		s.termErr = nil
		s.rejections = 0
		s.attempt = 0
		s.moveTo(messages.SocketIdle, nil)
	}
	s.pinned = true
	s.cancelLinger()
	if s.established() && !s.link.joining {
		s.sockRespond(ctx, ctx.Sender(), &messages.Connected{Session: s.link.session})
		return
	}
	if ctx.Sender() != nil {
		s.connectWaiters = append(s.connectWaiters, ctx.Sender())
	}
	if s.state == messages.SocketIdle {
		s.sockDial()
	}
}

func (s *socketConn) onUpdateHeaders(ctx actor.Context, m *messages.UpdateHeaders) {
	if s.state == messages.SocketClosed {
		s.sockRespond(ctx, ctx.Sender(), messages.ErrClosed)
		return
	}
	s.headers = m.Headers.Clone()
	s.headersVer++
	sent := false
	if s.established() {
		sent = s.sendUpdate()
	}
	s.sockRespond(ctx, ctx.Sender(), &messages.HeadersUpdated{Sent: sent})
}

func (s *socketConn) sendUpdate() bool {
	if s.updateByReconnect() {
		s.reconnectForUpdate() // socketconn_dial.go
		return true
	}
	op := wire.Update{ID: s.newID(), Headers: s.headers.Clone()}
	if s.codec.ExpectsReply(op) {
		s.track(op.ID, &sockPending{kind: sockReqUpdate, gen: s.gen})
	}
	if err := s.sendOp(op); err != nil {
		s.log.Warn("socket: sending update failed", zap.Error(err))
		return false
	}
	s.link.initVer = s.headersVer
	return true
}

// refuseWhenEnded answers a request with ErrClosed (after Disconnect) or
// the terminal error (in SocketFailed) and reports whether it did.
func (s *socketConn) refuseWhenEnded(ctx actor.Context) bool {
	switch s.state {
	case messages.SocketClosed:
		s.sockRespond(ctx, ctx.Sender(), messages.ErrClosed)
		return true
	case messages.SocketFailed:
		s.sockRespond(ctx, ctx.Sender(), s.termErr)
		return true
	}
	return false
}

func (s *socketConn) onListen(ctx actor.Context, m *messages.Listen) {
	if s.refuseWhenEnded(ctx) {
		return
	}
	l := NewSocketListener(m.Event, s.cfg.ListenerQueue)
	l.sockAdopt(s.sys, s.self)
	s.listeners[l.id] = l
	s.cancelLinger()
	if s.state == messages.SocketIdle {
		s.sockDial()
	}
	s.sockRespond(ctx, ctx.Sender(), l)
}

func (s *socketConn) onUnlisten(id uint64) {
	l, ok := s.listeners[id]
	if !ok {
		return
	}
	delete(s.listeners, id)
	s.droppedClosed += l.Dropped()
	l.sockEnd(messages.ErrClosed)
	s.sockMaybeIdle(false)
}

func (s *socketConn) onEmit(ctx actor.Context, m *messages.Emit) {
	if s.refuseWhenEnded(ctx) {
		return
	}
	ch := m.Channel
	if ch == "" {
		ch = s.cfg.JoinID
	}
	kept := s.keepsEmits()
	op := wire.Emit{Event: m.Event, Channel: ch, Data: m.Data, Args: m.Args}
	if m.WantAck || kept {
		op.ID = s.newID()
	}
	if kept && s.codec.DedupesEmits() {
		s.emitSeq++
		op.Key = s.emitStream + "-" + strconv.FormatUint(s.emitSeq, 10)
	}
	// Encode now: a bad emit fails at once rather than on flush, and the
	// frames (fresh memory) are all that is kept, not the caller's Data.
	frames, err := s.codec.Encode(op)
	if err != nil {
		s.sockRespond(ctx, ctx.Sender(), fmt.Errorf("pigeon/actors: socket: emit: %w", err))
		return
	}
	size := len(op.Data) + argsSize(op.Args)
	op.Data, op.Args = nil, nil
	out := &sockOutgoing{op: op, frames: frames, sender: ctx.Sender(), wantAck: m.WantAck, kept: kept, size: size}
	if !kept && s.established() {
		s.sendEmit(out)
		return
	}
	// Kept emits count against the buffer until acked, others until sent.
	if len(s.outbox)+1 > s.cfg.BufferCount || s.outboxBytes+out.size > s.cfg.BufferBytes {
		s.sockRespond(ctx, ctx.Sender(), messages.ErrBufferFull)
		return
	}
	s.outbox = append(s.outbox, out)
	s.outboxBytes += out.size
	switch {
	case m.WantAck:
		s.trackFor(op.ID, &sockPending{kind: sockReqEmit, sender: out.sender}, s.emitDeadline())
	case kept:
		out.pend = sockPending{kind: sockReqEmit} // answered below; no deadline
		s.pending[op.ID] = &out.pend
	default:
		out.answered = true
		s.sockRespond(ctx, ctx.Sender(), emitDone)
	}
	s.cancelLinger()
	switch {
	case s.established():
		s.flushEmits()
	case s.state == messages.SocketIdle:
		s.sockDial()
	}
	if kept && !m.WantAck {
		if s.panicked != nil { // an interceptor refused the write: say so
			s.resolve(op.ID)
			s.removeOutgoing(op.ID)
			s.sockRespond(ctx, ctx.Sender(), fmt.Errorf("pigeon/actors: socket: emit: %w", s.panicked))
			return
		}
		s.sockRespond(ctx, ctx.Sender(), emitDone)
	}
}

// emitDone is the reply to an emit that asked for no ack: one shared
// value, read only (the facade reads its nil Ack), so a plain emit
// allocates no reply.
var emitDone = &messages.EmitResult{}

// keepsEmits reports whether emits are kept until the server acks them and
// written again after a reconnect: always on pigeon.v1 (whose emitId the
// server dedupes: exactly once), and on socket.io with EmitRetries (at
// least once, like socket.io-client's retries).
func (s *socketConn) keepsEmits() bool {
	return s.codec.DedupesEmits() || s.cfg.EmitRetries > 0
}

// emitDeadline bounds an EmitWithAck from its arrival: the ack timeout,
// once per try when socket.io retries.
func (s *socketConn) emitDeadline() time.Duration {
	if s.codec.DedupesEmits() {
		return s.cfg.AckTimeout
	}
	return s.cfg.AckTimeout * time.Duration(s.cfg.EmitRetries+1)
}

// newEmitStream returns a random name for one incarnation's emit ids, so
// that ids of different clients (and of a restarted actor) never meet at
// the server.
func newEmitStream() string {
	var b [9]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// flushEmits writes, in order, every buffered emit not yet written on the
// live connection. It stops at the first write the pump refuses (a full
// queue): the rest follow on the next ack or connection. Emits that are
// not kept leave the outbox once written.
func (s *socketConn) flushEmits() {
	if !s.established() {
		return
	}
	j, blocked := 0, false
	for _, o := range s.outbox {
		if !blocked && s.established() && o.sentGen != s.gen {
			if !o.kept {
				s.outboxBytes -= o.size
				s.sendEmit(o)
				continue
			}
			blocked = !s.writeKept(o)
		}
		s.outbox[j] = o
		j++
	}
	clear(s.outbox[j:])
	s.outbox = s.outbox[:j]
}

// writeKept writes a kept emit (again) on the live connection and makes
// sure the ack watch runs. A full write queue leaves it for later (false).
func (s *socketConn) writeKept(o *sockOutgoing) bool {
	if err := s.sendFrames(o.frames); err != nil {
		var pe *messages.PanicError
		if !errors.Is(err, ws.ErrQueueFull) && !errors.As(err, &pe) {
			s.sendFailed(err) // Receive fails the socket on a panic
		}
		return false
	}
	if o.tries > 0 {
		s.emitsResent++
	}
	o.tries++
	o.sentGen = s.gen
	o.writtenAt = s.clock.Now()
	if s.emitWatch == nil || s.emitWatchGen != s.gen {
		s.armEmitWatch(s.cfg.AckTimeout)
	}
	return true
}

func (s *socketConn) armEmitWatch(d time.Duration) {
	if s.emitWatch != nil {
		s.emitWatch.Stop()
	}
	gen := s.gen
	s.emitWatchGen = gen
	s.emitWatch = s.clock.AfterFunc(d, func() {
		s.sys.Root.Send(s.self, &sockEmitWatch{sockOwned: sockOwned{s}, gen: gen})
	})
}

// onEmitWatch handles the kept emits of the live connection that got no
// ack within the ack timeout. On pigeon.v1 a connection that does not
// answer is lost: reconnect, and they are written again after the rejoin.
// On socket.io each is written again (the same ack id) until EmitRetries
// retries are spent, then given up.
func (s *socketConn) onEmitWatch(m *sockEmitWatch) {
	if m.gen != s.gen || s.emitWatchGen != m.gen {
		return
	}
	s.emitWatch = nil
	if !s.established() {
		return
	}
	now := s.clock.Now()
	var expired []*sockOutgoing
	next := time.Duration(-1)
	for _, o := range s.outbox {
		if !o.kept || o.sentGen != s.gen {
			continue
		}
		if left := o.writtenAt.Add(s.cfg.AckTimeout).Sub(now); left > 0 {
			if next < 0 || left < next {
				next = left
			}
			continue
		}
		expired = append(expired, o)
	}
	if len(expired) > 0 && s.codec.DedupesEmits() {
		s.log.Info("socket: emits not acknowledged; reconnecting to resend", zap.Int("emits", len(expired)))
		s.connLost(fmt.Errorf("pigeon/actors: socket: %d emits: %w", len(expired), messages.ErrAckTimeout))
		return
	}
	for _, o := range expired {
		if o.tries <= s.cfg.EmitRetries {
			o.sentGen = 0 // written again by flushEmits
			continue
		}
		p := s.resolve(o.op.ID)
		s.removeOutgoing(o.op.ID)
		if o.wantAck {
			if p != nil {
				s.reply(p.sender, fmt.Errorf("pigeon/actors: socket: emit after %d tries: %w", o.tries, messages.ErrAckTimeout))
			}
			continue
		}
		s.emitsDropped++
		s.log.Warn("socket: emit dropped: no ack after its retries", zap.String("event", o.op.Event), zap.Int("tries", o.tries))
	}
	s.flushEmits()
	if next >= 0 && s.established() {
		s.armEmitWatch(next) // the oldest one still waiting (sooner than any retry's)
	}
	s.sockMaybeIdle(false)
}

// emitAcked settles emit id after the server's ack (err nil) or error
// reply: out of the outbox, its sender answered (a refused emit that was
// already answered, a plain kept one, is counted as dropped), and the next
// buffered emits written.
func (s *socketConn) emitAcked(p *sockPending, id string, ack json.RawMessage, serr error) {
	o := s.outgoing(id)
	s.removeOutgoing(id)
	switch {
	case serr == nil:
		s.reply(p.sender, &messages.EmitResult{Ack: ack})
	case p.sender != nil:
		s.reply(p.sender, serr)
	case o != nil:
		s.emitsDropped++
		s.log.Warn("socket: emit dropped: refused by the server", zap.String("event", o.op.Event), zap.Error(serr))
	}
	s.flushEmits()
	s.sockMaybeIdle(false)
}

// unsettledPlain counts the buffered or unacked emits whose Emit already
// returned nil: what ending the socket now drops.
func (s *socketConn) unsettledPlain() uint64 {
	var n uint64
	for _, o := range s.outbox {
		if !o.wantAck {
			n++
		}
	}
	return n
}

// dropEmits empties the outbox as the socket ends, counting the plain
// emits it gives up on (acked ones are answered through s.pending).
func (s *socketConn) dropEmits() {
	if n := s.unsettledPlain(); n > 0 {
		s.emitsDropped += n
		s.log.Warn("socket: emits dropped: the socket ended before the server acknowledged them", zap.Uint64("emits", n))
	}
	if s.emitWatch != nil {
		s.emitWatch.Stop()
		s.emitWatch = nil
	}
	s.outbox, s.outboxBytes = nil, 0
}

// buffered counts the emits not yet written on the live connection.
func (s *socketConn) buffered() (buffered, unacked int) {
	for _, o := range s.outbox {
		if s.established() && o.sentGen == s.gen {
			unacked++
		} else {
			buffered++
		}
	}
	return buffered, unacked
}

func (s *socketConn) outgoing(id string) *sockOutgoing {
	for _, o := range s.outbox {
		if o.op.ID == id {
			return o
		}
	}
	return nil
}

// sendEmit writes an emit that is not kept on the live connection and
// replies as documented.
func (s *socketConn) sendEmit(out *sockOutgoing) {
	_, tracked := s.pending[out.op.ID]
	if out.wantAck && !tracked && s.codec.ExpectsReply(out.op) {
		s.track(out.op.ID, &sockPending{kind: sockReqEmit, sender: out.sender})
	}
	if err := s.sendFrames(out.frames); err != nil {
		if out.wantAck {
			s.resolve(out.op.ID)
		}
		var pe *messages.PanicError
		if !errors.As(err, &pe) { // a full write queue
			err = errors.Join(messages.ErrBufferFull, err)
		}
		if out.answered { // Emit returned nil when it was buffered
			s.emitsDropped++
			s.log.Warn("socket: buffered emit dropped: the write failed", zap.String("event", out.op.Event), zap.Error(err))
			return
		}
		s.reply(out.sender, fmt.Errorf("pigeon/actors: socket: emit: %w", err))
		return
	}
	if !out.wantAck && !out.answered {
		s.reply(out.sender, emitDone)
	} else if !s.codec.ExpectsReply(out.op) {
		s.resolve(out.op.ID)
		s.reply(out.sender, emitDone)
	}
}

// track registers a request waiting for a reply and arms its timeout.
func (s *socketConn) track(id string, p *sockPending) { s.trackFor(id, p, s.cfg.AckTimeout) }

// trackFor is track with timeout d.
func (s *socketConn) trackFor(id string, p *sockPending, d time.Duration) {
	p.timer = s.clock.AfterFunc(d, func() {
		s.sys.Root.Send(s.self, &sockAckTimeout{sockOwned: sockOwned{s}, id: id})
	})
	s.pending[id] = p
}

// resolve removes a pending request and stops its timer.
func (s *socketConn) resolve(id string) *sockPending {
	p, ok := s.pending[id]
	if !ok {
		return nil
	}
	delete(s.pending, id)
	if p.timer != nil {
		p.timer.Stop()
	}
	return p
}

func (s *socketConn) onAckTimeout(id string) {
	p := s.resolve(id)
	if p == nil {
		return
	}
	switch p.kind {
	case sockReqEmit:
		s.removeOutgoing(id)
		s.reply(p.sender, messages.ErrAckTimeout)
		s.sockMaybeIdle(false)
	default:
		if p.gen == s.gen && s.link.pump != nil {
			s.log.Info("socket: request timed out; reconnecting", zap.Int("kind", int(p.kind)))
			s.connLost(fmt.Errorf("pigeon/actors: socket: %w", messages.ErrAckTimeout))
		}
	}
}

func (s *socketConn) removeOutgoing(id string) {
	for i, o := range s.outbox {
		if o.op.ID == id {
			s.outboxBytes -= o.size
			s.outbox = append(s.outbox[:i], s.outbox[i+1:]...)
			return
		}
	}
}

// onTokens follows the AuthStore: a new access token of the followed
// account replaces the bearer (one `update` on a live connection; the next
// init otherwise). The same token again changes nothing.
func (s *socketConn) onTokens(m *messages.TokensChanged) {
	if s.state == messages.SocketClosed || s.state == messages.SocketFailed {
		return
	}
	if s.cfg.UID == "" && !m.Current || s.cfg.UID != "" && m.Snapshot.UID != s.cfg.UID {
		return
	}
	if m.Ended != 0 {
		if s.cfg.UID != "" {
			s.fail(fmt.Errorf("pigeon/actors: socket: account %q: %w", s.cfg.UID, m.Ended.Err()), websocket.CloseNormalClosure)
		}
		return // following the current account: its owner decides (LogOut disconnects)
	}
	bearer := "Bearer " + string(m.Snapshot.AccessToken)
	if m.Snapshot.AccessToken == "" || s.headers.Get("Authorization") == bearer {
		return
	}
	h := s.headers.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", bearer)
	s.headers = h
	s.headersVer++
	if s.established() {
		s.sendUpdate()
	}
}
