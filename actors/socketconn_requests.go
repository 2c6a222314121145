package actors

// SocketConn: the requests of its protocol (messages/socket.go) and the
// bookkeeping of the replies they wait for.

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
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
	op := wire.Emit{Event: m.Event, Channel: ch, Data: m.Data, Args: m.Args}
	if m.WantAck {
		op.ID = s.newID()
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
	out := &sockOutgoing{op: op, frames: frames, sender: ctx.Sender(), wantAck: m.WantAck, size: size}
	if s.established() {
		s.sendEmit(out)
		return
	}
	if len(s.outbox)+1 > s.cfg.BufferCount || s.outboxBytes+out.size > s.cfg.BufferBytes {
		s.sockRespond(ctx, ctx.Sender(), messages.ErrBufferFull)
		return
	}
	s.outbox = append(s.outbox, out)
	s.outboxBytes += out.size
	if m.WantAck {
		s.track(op.ID, &sockPending{kind: sockReqEmit, sender: out.sender})
	} else {
		s.sockRespond(ctx, ctx.Sender(), &messages.EmitResult{})
	}
	s.cancelLinger()
	if s.state == messages.SocketIdle {
		s.sockDial()
	}
}

// sendEmit writes an emit on the live connection and replies as documented.
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
		s.reply(out.sender, fmt.Errorf("pigeon/actors: socket: emit: %w", err))
		return
	}
	if !out.wantAck {
		s.reply(out.sender, &messages.EmitResult{})
	} else if !s.codec.ExpectsReply(out.op) {
		s.resolve(out.op.ID)
		s.reply(out.sender, &messages.EmitResult{})
	}
}

// track registers a request waiting for a reply and arms its timeout.
func (s *socketConn) track(id string, p *sockPending) {
	p.timer = s.clock.AfterFunc(s.cfg.AckTimeout, func() {
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
