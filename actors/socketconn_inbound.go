package actors

// SocketConn: frames from the server, decoded and dispatched, and the
// events handed to listeners.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

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
	s.onMsgs(msgs, err)
}

// onDecoded is onFrame for a frame the reader decoded (msgs, err).
func (s *socketConn) onDecoded(msgs []wire.Msg, err error) {
	s.link.lastRx = s.clock.Now()
	s.onMsgs(msgs, err)
}

// onMsgs handles the messages of one decoded frame (or its decode error).
func (s *socketConn) onMsgs(msgs []wire.Msg, err error) {
	if err != nil {
		s.fail(&messages.SocketCloseError{Code: wire.CloseBadMessage, Reason: "bad message", Err: err}, wire.CloseBadMessage)
		return
	}
	gen := s.gen
	for _, m := range msgs {
		if gen != s.gen || s.link.pump == nil {
			return // the connection was dropped by an earlier message
		}
		m, err := s.assemble(m)
		if err != nil {
			s.fail(&messages.SocketCloseError{Code: wire.CloseBadMessage, Reason: "bad message", Err: err}, wire.CloseBadMessage)
			return
		}
		if m != nil {
			s.onMsg(m)
		}
	}
}

// sioLink is the socket.io state of one connection: a binary packet
// waiting for its attachments, and the pid its CONNECT offered to resume.
type sioLink struct {
	partial *wire.Partial
	bins    [][]byte
	sentPID string
	headers http.Header // the headers the CONNECT carried
}

// sioSession is what connection state recovery carries from one socket.io
// connection to the next: the server's pid and the offset of the last
// event seen ("" = nothing to resume).
type sioSession struct {
	pid, offset string
}

// assemble collects a binary packet's attachments (wire.Partial, then
// its wire.Attachment frames) and returns the message to dispatch: m
// itself, the completed packet, or nil while attachments are missing. Any
// other frame in the middle of a binary packet, or an attachment without
// one, is a protocol error.
func (s *socketConn) assemble(m wire.Msg) (wire.Msg, error) {
	l := &s.link.sio
	switch m := m.(type) {
	case wire.Partial:
		if l.partial != nil {
			return nil, fmt.Errorf("pigeon/actors: socket: binary packet header while %d attachments are still due", l.partial.Attachments-len(l.bins))
		}
		if m.Attachments == 0 {
			return m.Complete(nil)
		}
		l.partial, l.bins = &m, make([][]byte, 0, m.Attachments)
		return nil, nil
	case wire.Attachment:
		if l.partial == nil {
			return nil, fmt.Errorf("pigeon/actors: socket: binary frame (%d bytes) outside a binary packet", len(m.Data))
		}
		l.bins = append(l.bins, m.Data)
		if len(l.bins) < l.partial.Attachments {
			return nil, nil
		}
		p, bins := l.partial, l.bins
		l.partial, l.bins = nil, nil
		return p.Complete(bins)
	}
	if l.partial != nil {
		return nil, fmt.Errorf("pigeon/actors: socket: %T while %d attachments are still due", m, l.partial.Attachments-len(l.bins))
	}
	return m, nil
}

// sockLocal is an internal message that handles itself (receive
// dispatches it).
type sockLocal interface {
	sockInternal
	handle(s *socketConn)
}

// sockEventAck carries a listener's answer to the server's ack request.
type sockEventAck struct {
	sockOwned
	gen  uint64
	id   string
	args []wire.Arg
}

func (*sockEventAck) IgnoreDeadLetterLogging() {}

// handle sends the ack on the connection the event came on; once that
// connection is gone the server has dropped the request, so the ack is too.
func (m *sockEventAck) handle(s *socketConn) {
	if m.gen != s.gen || s.link.pump == nil {
		s.log.Debug("socket: ack for an event of an earlier connection dropped", zap.String("id", m.id))
		return
	}
	if err := s.sendOp(wire.EventAck{ID: m.id, Args: m.args}); err != nil {
		s.log.Warn("socket: sending an event ack failed", zap.Error(err))
	}
}

// ackFunc is SocketEvent.Ack for the server's ack request id on the
// current connection.
func (s *socketConn) ackFunc(id string) func(args ...any) error {
	sys, self, owner, gen := s.sys, s.self, sockOwned{s}, s.gen
	var done atomic.Bool
	return func(args ...any) error {
		a, err := wire.ArgsOf(args...)
		if err != nil {
			return fmt.Errorf("pigeon/actors: socket: ack: %w", err)
		}
		if !done.CompareAndSwap(false, true) {
			return messages.ErrAlreadyAcked
		}
		sys.Root.Send(self, &sockEventAck{sockOwned: owner, gen: gen, id: id, args: a})
		return nil
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
		s.log.Info("socket: server ended the session", zap.String("reason", m.Reason), zap.Bool("final", m.Final))
		if m.Final {
			// The server's socket.disconnect(): the reference client does
			// not reconnect, and the session cannot be resumed.
			s.sio = sioSession{}
			s.fail(fmt.Errorf("pigeon/actors: socket: %w (%s)", messages.ErrServerDisconnect, m.Reason), 0)
			return
		}
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
	if sent := s.link.sio.sentPID; sent != "" {
		// Connection state recovery: the same pid back means the server
		// resumed the session and replayed what was missed.
		s.link.recovered = m.PID == sent
		if !s.link.recovered {
			s.sio.offset = ""
			s.broadcast(messages.SocketEvent{Name: messages.SocketGapEvent, Gap: true}, true)
		}
	}
	s.sio.pid = m.PID
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
	s.flushEmits()
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
		s.emitAcked(p, m.ID, m.Data, nil)
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
		if m.NotCredentials {
			// Refused for another reason ("server busy", an unknown
			// namespace): fresh credentials would not help, and the
			// reference client does not retry either.
			s.fail(serr, 0)
			return
		}
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
		s.emitAcked(p, m.ID, nil, serr)
	case sockReqUpdate:
		s.fail(fmt.Errorf("pigeon/actors: socket: update rejected: %w", serr), websocket.CloseNormalClosure)
	case sockReqJoin:
		s.fail(fmt.Errorf("pigeon/actors: socket: join %s rejected: %w", p.channel, serr), websocket.CloseNormalClosure)
	default:
		s.log.Warn("socket: server error", zap.Error(serr))
	}
}

func (s *socketConn) onEvent(m wire.Event) {
	if s.sio.pid != "" {
		if ev, off, ok := wire.SocketIOOffset(m); ok {
			m, s.sio.offset = ev, off
		}
	}
	var ack func(...any) error
	if m.AckID != "" {
		ack = s.ackFunc(m.AckID)
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
	s.broadcast(messages.SocketEvent{Name: m.Event, Channel: m.Channel, Position: m.Position, Data: m.Data, Args: m.Args, Ack: ack}, false)
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
		if shared && ev.Args != nil {
			e.Args = copyArgs(ev.Args)
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
		Listeners: len(s.listeners), PendingAcks: len(s.pending),
		Dropped: s.droppedClosed, Duplicates: s.duplicates, Positions: map[string]wire.Position{},
		LastErr: s.lastErr, Step: s.step(), EmitsDropped: s.emitsDropped, EmitsResent: s.emitsResent,
	}
	st.Buffered, st.Unacked = s.buffered()
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

// copyArgs returns a deep copy of args (each listener owns its event).
func copyArgs(args []wire.Arg) []wire.Arg {
	out := make([]wire.Arg, len(args))
	for i, a := range args {
		if a.JSON != nil {
			out[i].JSON = append(json.RawMessage(nil), a.JSON...)
		}
		if a.Binary != nil {
			out[i].Binary = append([]byte{}, a.Binary...)
		}
	}
	return out
}

// argsSize is the bytes args take in the emit buffer.
func argsSize(args []wire.Arg) int {
	n := 0
	for _, a := range args {
		n += len(a.JSON) + len(a.Binary)
	}
	return n
}
