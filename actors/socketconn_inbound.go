package actors

// SocketConn: frames from the server, decoded and dispatched, and the
// events handed to listeners.

import (
	"fmt"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
)

func (s *socketConn) onFrame(f wire.Frame) {
	s.link.lastRx = s.clock.Now()
	f, ok := s.intercept(SocketInbound, f)
	if !ok {
		return // dropped (or the interceptor panicked: see Receive)
	}
	msgs, err := s.codec.Decode(f)
	if err != nil {
		s.fail(&messages.SocketCloseError{Code: wire.CloseBadMessage, Reason: "bad message", Err: err}, wire.CloseBadMessage)
		return
	}
	gen := s.gen
	for _, m := range msgs {
		if gen != s.gen || s.link.pump == nil {
			return // the connection was dropped by an earlier message
		}
		s.onMsg(m)
	}
}

func (s *socketConn) onMsg(m wire.Msg) {
	switch m := m.(type) {
	case wire.Open:
		if s.link.initSent {
			return
		}
		if m.PingInterval > 0 {
			s.link.pingInterval = ServerPing(m.PingInterval)
			if m.PingTimeout > 0 {
				s.link.pingGrace = ServerPing(m.PingTimeout)
			}
			s.armPing(s.link.pingInterval)
		}
		for id, p := range s.pending { // the open-wait timer
			if p.kind == sockReqInit {
				s.resolve(id)
			}
		}
		s.sendInit()
	case wire.InitAck:
		s.onInitAck(m)
	case wire.Ack:
		s.onAck(m)
	case wire.Error:
		s.onServerError(m)
	case wire.Event:
		s.onEvent(m)
	case wire.ServerPing:
		_ = s.sendOp(wire.Pong{})
	case wire.ServerPong:
	case wire.Disconnect:
		s.log.Info("socket: server ended the session", zap.String("reason", m.Reason))
		s.connLost(fmt.Errorf("pigeon/actors: socket: server disconnect: %s", m.Reason))
	}
}

func (s *socketConn) onInitAck(m wire.InitAck) {
	if !s.link.initSent || s.state == messages.SocketConnected {
		return
	}
	if m.ID != "" && m.ID != s.link.initID {
		return
	}
	s.resolve(s.link.initID)
	s.link.upSince = s.clock.Now()
	s.moveTo(messages.SocketConnected, nil)
	s.link.session = m.Session
	if m.PingIntervalMs > 0 {
		s.link.pingInterval = ServerPing(m.PingIntervalMs)
		s.armPing(s.link.pingInterval)
	}
	if s.link.initVer != s.headersVer {
		s.sendUpdate() // headers changed during the handshake
	}
	if s.cfg.JoinID != "" {
		op := wire.Join{ID: s.newID(), Channel: s.cfg.JoinID, Since: s.positions[s.cfg.JoinID]}
		if s.codec.ExpectsReply(op) {
			s.track(op.ID, &sockPending{kind: sockReqJoin, gen: s.gen, channel: op.Channel, since: op.Since})
			s.link.joining = true
		}
		if err := s.sendOp(op); err != nil {
			s.sendFailed(err)
			return
		}
	}
	out := s.outbox
	s.outbox, s.outboxBytes = nil, 0
	for i, o := range out {
		if !s.established() {
			s.outbox = append(s.outbox, out[i:]...)
			for _, r := range out[i:] {
				s.outboxBytes += r.size
			}
			break
		}
		s.sendEmit(o)
	}
	if !s.link.joining {
		s.answerConnected()
	}
	s.sockMaybeIdle(false)
}

// answerConnected tells the Connect waiters the connection is up (and
// JoinID joined).
func (s *socketConn) answerConnected() {
	s.lastErr = nil
	s.everUp = true
	s.announceConnected()
	for _, w := range s.connectWaiters {
		s.reply(w, &messages.Connected{Session: s.link.session})
	}
	s.connectWaiters = nil
}

func (s *socketConn) onAck(m wire.Ack) {
	p := s.resolve(m.ID)
	if p == nil {
		return
	}
	switch p.kind {
	case sockReqEmit:
		s.reply(p.sender, &messages.EmitResult{Ack: m.Data})
		s.sockMaybeIdle(false)
	case sockReqJoin:
		ch := p.channel
		if m.Channel != "" {
			ch = m.Channel
		}
		prev, had := s.positions[ch]
		if m.Position != (wire.Position{}) && m.Position.Seq <= MaxStreamSeq {
			s.positions[ch] = m.Position
		}
		s.link.recovered = had && prev != (wire.Position{}) && m.Recovered
		if had && prev != (wire.Position{}) && !m.Recovered {
			s.broadcast(messages.SocketEvent{Name: messages.SocketGapEvent, Channel: ch, Position: m.Position, Gap: true}, true)
		}
		if p.gen == s.gen && s.link.joining && p.channel == s.cfg.JoinID {
			s.link.joining = false
			s.answerConnected()
		}
	}
}

func (s *socketConn) onServerError(m wire.Error) {
	serr := &messages.SocketServerError{Code: m.Code, Message: m.Message, Retryable: m.Retryable}
	if !s.established() && s.link.initSent && (m.ID == "" || m.ID == s.link.initID) {
		s.rejectedBy(serr) // init rejected
		return
	}
	p := s.resolve(m.ID)
	if p == nil {
		s.log.Warn("socket: server error", zap.Error(serr))
		return
	}
	switch p.kind {
	case sockReqEmit:
		s.reply(p.sender, serr)
		s.sockMaybeIdle(false)
	case sockReqUpdate:
		s.fail(fmt.Errorf("pigeon/actors: socket: update rejected: %w", serr), websocket.CloseNormalClosure)
	case sockReqJoin:
		s.fail(fmt.Errorf("pigeon/actors: socket: join %s rejected: %w", p.channel, serr), websocket.CloseNormalClosure)
	default:
		s.log.Warn("socket: server error", zap.Error(serr))
	}
}

func (s *socketConn) onEvent(m wire.Event) {
	if m.AckID != "" {
		_ = s.sendOp(wire.EventAck{ID: m.AckID})
	}
	if m.Position.Seq > MaxStreamSeq {
		// Out of range: delivered, but never a position, so it cannot
		// make every later event look like a duplicate.
		s.log.Warn("socket: event seq out of range; not used for dedupe", zap.String("channel", m.Channel), zap.Uint64("seq", m.Position.Seq))
	} else if m.Position != (wire.Position{}) {
		last, ok := s.positions[m.Channel]
		if ok && last.Epoch == m.Position.Epoch && m.Position.Seq <= last.Seq {
			s.duplicates++
			return
		}
		s.positions[m.Channel] = m.Position
	}
	s.broadcast(messages.SocketEvent{Name: m.Event, Channel: m.Channel, Position: m.Position, Data: m.Data}, false)
}

// broadcast offers ev to every matching listener without blocking. ev.Data
// must be the actor's own (fresh from the codec): the first listener gets
// it, every other one a copy.
func (s *socketConn) broadcast(ev messages.SocketEvent, all bool) {
	shared := false
	for id, l := range s.listeners {
		if !all && l.event != "" && l.event != ev.Name {
			continue
		}
		e := ev
		if shared && len(ev.Data) > 0 {
			e.Data = append([]byte(nil), ev.Data...)
		}
		shared = true
		if !s.offer(l, e) {
			delete(s.listeners, id)
			s.droppedClosed += l.Dropped()
			l.sockEnd(messages.ErrSlowConsumer)
			s.log.Warn("socket: slow listener closed", zap.Uint64("listener", id), zap.String("event", l.event))
		}
	}
	if len(s.listeners) == 0 {
		s.sockMaybeIdle(false)
	}
}

func (s *socketConn) snapshot() *messages.State {
	st := &messages.State{
		State: s.state, Err: s.termErr, Generation: s.gen, Attempt: s.attempt, Session: s.link.session,
		Listeners: len(s.listeners), Buffered: len(s.outbox), PendingAcks: len(s.pending),
		Dropped: s.droppedClosed, Duplicates: s.duplicates, Positions: map[string]wire.Position{},
		LastErr: s.lastErr, Step: s.step(),
	}
	for _, l := range s.listeners {
		st.Dropped += l.Dropped()
	}
	for k, v := range s.positions {
		st.Positions[k] = v
	}
	return st
}

// step names what a connection in progress waits for.
func (s *socketConn) step() string {
	switch {
	case s.link.dial != nil:
		return "dialing"
	case s.state == messages.SocketConnecting && s.link.pump != nil:
		return "handshake"
	case s.link.joining:
		return "joining " + s.cfg.JoinID
	case s.state == messages.SocketReconnecting:
		return "waiting to reconnect"
	}
	return ""
}
