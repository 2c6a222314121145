package actors

// SocketConn: the connection lifecycle (dial, handshake, keep-alive,
// teardown, reconnect and the terminal states).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// sockDial starts a dial off the mailbox.
func (s *socketConn) sockDial() {
	s.gen++
	s.moveTo(messages.SocketConnecting, nil)
	gen := s.gen
	ctx, cancel := context.WithCancel(context.Background())
	d := &sockDial{cancel: cancel}
	s.link.dial = d
	url, err := s.codec.DialURL(s.cfg.URL)
	if err != nil {
		cancel()
		s.fail(err, 0)
		return
	}
	headers := s.headers.Clone()
	rejected := s.rejected
	s.rejected = nil
	ver := s.headersVer
	src := s.cfg.Headers
	dcfg := s.cfg.Dial
	dcfg.Subprotocols = s.codec.Subprotocols()
	hTimeout := s.cfg.HeaderTimeout
	observer := s.cfg.Observer
	sys, self := s.sys, s.self
	s.dialWG.Add(1)
	go func() {
		defer s.dialWG.Done()
		defer cancel()
		res := &sockDialResult{sockOwned: sockOwned{s}, gen: gen, dial: d, headers: headers, ver: ver}
		if src != nil {
			hctx, hcancel := context.WithTimeout(ctx, hTimeout)
			h, err := sockCallHeaders(hctx, src, rejected)
			hcancel()
			if err != nil {
				res.err = &sockHeaderError{err: err}
				sys.Root.Send(self, res)
				return
			}
			res.headers, res.fetched = h.Clone(), true
		}
		dcfg.Header = res.headers
		conn, err := observedDial(ctx, observer, url, dcfg)
		if err != nil {
			res.err = err
		} else {
			d.mu.Lock()
			if d.abandoned {
				_ = conn.Close()
				res.err = context.Canceled
			} else {
				d.conn = conn
			}
			d.mu.Unlock()
		}
		sys.Root.Send(self, res)
	}()
}

// sockCallHeaders calls the header source, turning a panic into an error.
func sockCallHeaders(ctx context.Context, src HeaderSource, rejected http.Header) (h http.Header, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pigeon/actors: socket: header source panicked: %v", r)
		}
	}()
	return src(ctx, rejected.Clone())
}

type sockHeaderError struct{ err error }

func (e *sockHeaderError) Error() string {
	return "pigeon/actors: socket: header source: " + e.err.Error()
}
func (e *sockHeaderError) Unwrap() error { return e.err }

func (s *socketConn) onDialResult(m *sockDialResult) {
	if m.gen != s.gen || s.state != messages.SocketConnecting || s.link.dial != m.dial {
		m.dial.abandon()
		return
	}
	s.link.dial = nil
	if m.fetched && m.ver == s.headersVer {
		s.headers = m.headers
		s.headersVer++
	}
	if m.err != nil && s.rejectCause != nil {
		// Name the rejection that made this attempt fetch fresh headers.
		m.err = fmt.Errorf("%w (retrying after: %w)", m.err, s.rejectCause)
	}
	s.rejectCause = nil
	if m.err != nil {
		var he *sockHeaderError
		var hs *ws.HandshakeError
		switch {
		case errors.As(m.err, &he) && (errors.Is(m.err, messages.ErrSessionExpired) || errors.Is(m.err, messages.ErrNoAuth) || errors.Is(m.err, messages.ErrLoggedOut)):
			s.fail(m.err, 0)
		case errors.As(m.err, &hs) && (hs.StatusCode == http.StatusUnauthorized || hs.StatusCode == http.StatusForbidden):
			s.rejectedBy(m.err)
		default:
			s.log.Info("socket: dial failed", zap.Error(m.err))
			s.scheduleReconnect(m.err)
		}
		return
	}
	conn := m.dial.take()
	if conn == nil { // cannot happen: abandoned dials are stale
		s.scheduleReconnect(errors.New("pigeon/actors: socket: dial lost its connection"))
		return
	}
	gen := s.gen
	var decode wire.Codec
	if codec := s.codec; len(s.cfg.Interceptors) == 0 && codec == wire.PigeonV1() {
		// The built-in pigeon.v1 codec is stateless and never panics, and
		// nothing rewrites frames first: the inbox's drainer decodes, so
		// the actor's mailbox is busy only with what the messages mean (an
		// Emit behind an ack waits less). Any other codec (a wrapper
		// too) decodes in the actor, which recovers its panics.
		decode = codec
	}
	in := newSockInbox(s, gen, decode)
	s.link.pump = ws.NewPump(conn, ws.PumpConfig{
		OnFrame:      in.frame,
		OnReadError:  in.readError,
		WriteTimeout: s.cfg.WriteTimeout,
		QueueSize:    s.cfg.WriteQueue,
	})
	s.link.initSent = false
	s.link.pingInterval, s.link.pingGrace = s.cfg.PingInterval, s.cfg.PingGrace
	s.link.lastRx = s.clock.Now()
	s.armPing(s.link.pingInterval)
	if s.codec.ServerSpeaksFirst() {
		// The server's open message comes first; Init follows it. Bound
		// the wait like an init.
		s.track(s.newID(), &sockPending{kind: sockReqInit, gen: gen})
		return
	}
	s.sendInit()
}

func (s *socketConn) sendInit() {
	s.link.initSent = true
	op := wire.Init{ID: s.newID(), Headers: s.headers.Clone(), PID: s.sio.pid, Offset: s.sio.offset}
	s.link.sio.sentPID = op.PID
	s.link.sio.headers = op.Headers
	s.link.initID = op.ID
	s.link.initVer = s.headersVer
	if s.codec.ExpectsReply(op) {
		s.track(op.ID, &sockPending{kind: sockReqInit, gen: s.gen})
	}
	if err := s.sendOp(op); err != nil {
		s.sendFailed(err)
	}
}

// sendFailed handles a write the live connection refused. A closed pump
// means its reader has already seen why the connection ended (the
// server's close frame, say 4003) and reports it (sockInbound.lost): wait for
// that rather than guess. Any other failure loses the connection now.
func (s *socketConn) sendFailed(err error) {
	if errors.Is(err, ws.ErrPumpClosed) && s.link.pump != nil {
		return
	}
	s.connLost(err)
}

// sendOp encodes op and queues its frames (sendFrames).
func (s *socketConn) sendOp(op wire.Op) error {
	frames, err := s.codec.Encode(op)
	if err != nil {
		return err
	}
	return s.sendFrames(frames)
}

// sendFrames runs the outbound interceptors and queues the frames.
func (s *socketConn) sendFrames(frames []wire.Frame) error {
	if s.link.pump == nil {
		return ws.ErrPumpClosed
	}
	for _, f := range frames {
		f, ok := s.intercept(SocketOutbound, f)
		if s.panicked != nil {
			return s.panicked
		}
		if !ok {
			continue
		}
		if err := s.link.pump.Send(f); err != nil {
			return err
		}
	}
	return nil
}

// intercept runs the interceptors on f. A panicking interceptor drops the
// frame and is recorded in s.panicked (Receive then fails the socket with
// it).
func (s *socketConn) intercept(dir SocketDirection, f wire.Frame) (out wire.Frame, keep bool) {
	if len(s.cfg.Interceptors) == 0 {
		return f, true
	}
	defer func() {
		if r := recover(); r != nil {
			if s.panicked == nil {
				s.panicked = &messages.PanicError{Callback: "socket interceptor", Value: r}
			}
			out, keep = wire.Frame{}, false
		}
	}()
	for _, ic := range s.cfg.Interceptors {
		var ok bool
		if f, ok = ic(dir, f); !ok {
			return f, false
		}
	}
	return f, true
}

func (s *socketConn) armPing(d time.Duration) {
	if s.link.pingTimer != nil {
		s.link.pingTimer.Stop()
	}
	gen := s.gen
	s.link.pingTimer = s.clock.AfterFunc(d, func() { s.sys.Root.Send(s.self, &sockPingTick{sockOwned: sockOwned{s}, gen: gen}) })
}

func (s *socketConn) onPingTick() {
	s.link.pingTimer = nil
	now := s.clock.Now()
	deadline := s.link.lastRx.Add(s.link.pingInterval + s.link.pingGrace)
	if !now.Before(deadline) {
		s.log.Info("socket: no server traffic within ping interval + grace; reconnecting")
		s.connLost(fmt.Errorf("pigeon/actors: socket: no server traffic for %s", s.link.pingInterval+s.link.pingGrace))
		return
	}
	if s.established() {
		_ = s.sendOp(wire.Ping{T: now.Unix()})
	}
	next := s.link.pingInterval
	if r := deadline.Sub(now); r < next {
		next = r
	}
	s.armPing(next)
}

// dropConn tears the current connection down (gracefully with code when
// code != 0) and clears the connection-scoped state.
func (s *socketConn) dropConn(code int, text string) {
	s.gen++ // frames and timers of the old connection are stale from now on
	link := s.link
	s.link = sockLink{}
	if !link.upSince.IsZero() && s.clock.Now().Sub(link.upSince) >= s.cfg.StableAfter {
		// It stayed up: the next loss starts the backoff (and the
		// credential budget) over. One that did not counts as a failed
		// attempt, so the backoff keeps growing while a server flaps.
		s.attempt, s.rejections = 0, 0
	}
	if link.dial != nil {
		link.dial.abandon()
	}
	if link.pingTimer != nil {
		link.pingTimer.Stop()
	}
	if s.reconnectTmr != nil {
		s.reconnectTmr.Stop()
		s.reconnectTmr = nil
	}
	for id, p := range s.pending {
		if p.kind != sockReqEmit {
			s.resolve(id)
		}
	}
	if p := link.pump; p != nil {
		// Never wait for the pump here: this handler may be running on
		// the pump's own reader goroutine (see inlineMailbox). A closer
		// goroutine waits instead; Stopping waits for the closers.
		s.closers.Add(1)
		if code == 0 {
			p.Abort()
			go func() {
				defer s.closers.Done()
				p.Close()
			}()
			return
		}
		p.CloseGraceful(code, text)
		sys, self := s.sys, s.self
		go func() {
			defer s.closers.Done()
			select {
			case <-p.Done():
			case <-time.After(s.cfg.WriteTimeoutOrDefault()):
			}
			p.Close()
			sys.Root.Send(self, &sockCloserDone{sockOwned{s}})
		}()
	}
}

// connLost handles a lost connection that should be retried.
func (s *socketConn) connLost(cause error) {
	s.dropConn(0, "")
	s.scheduleReconnect(cause)
}

func (s *socketConn) scheduleReconnect(cause error) {
	s.lastErr = cause
	if s.cfg.FailFast && !s.everUp && s.wanted() {
		s.fail(cause, 0)
		return
	}
	// Connect waiters asked for a connection: this attempt failed, and
	// they learn why (the actor keeps retrying while it is wanted).
	for _, w := range s.connectWaiters {
		s.reply(w, cause)
	}
	s.connectWaiters = nil
	if !s.wanted() {
		s.moveTo(messages.SocketIdle, nil)
		return
	}
	if s.cfg.MaxReconnectAttempts > 0 && s.attempt >= s.cfg.MaxReconnectAttempts {
		s.fail(fmt.Errorf("%w after %d attempts: %w", messages.ErrReconnectExhausted, s.attempt, cause), 0)
		return
	}
	delay := s.bo.Delay(s.attempt)
	s.attempt++
	s.observeReconnect()
	s.nextDelay = delay
	s.moveTo(messages.SocketReconnecting, cause)
	gen := s.gen
	s.log.Debug("socket: reconnect scheduled", zap.Duration("delay", delay), zap.Int("attempt", s.attempt), zap.NamedError("cause", cause))
	s.reconnectTmr = s.clock.AfterFunc(delay, func() { s.sys.Root.Send(s.self, &sockReconnectTick{sockOwned: sockOwned{s}, gen: gen}) })
}

// rejectedBy handles a credentials rejection: fetch fresh headers once and
// retry at once; a second rejection in a row is terminal.
func (s *socketConn) rejectedBy(cause error) {
	s.lastErr = cause
	rejected := s.headers.Clone()
	accepted := !s.link.upSince.IsZero() // the server took these credentials, then refused them
	s.dropConn(0, "")
	if rejected == nil {
		rejected = http.Header{}
	}
	if s.rejections >= 1 {
		if !accepted {
			s.fail(&messages.SocketRejectedError{Err: cause}, 0)
			return
		}
		// Accepted, then refused before the connection proved stable:
		// fetch fresh headers again, but only after this backoff step,
		// so a server that flaps on credentials costs one refresh per
		// step, not a refresh loop.
		s.rejected, s.rejectCause = rejected, cause
		s.log.Info("socket: credentials refused again; fresh headers after the backoff", zap.Error(cause))
		s.scheduleReconnect(cause)
		return
	}
	s.rejections++
	s.rejectCause = cause
	s.rejected = rejected
	s.log.Info("socket: credentials rejected; retrying with fresh headers", zap.Error(cause))
	if !s.wanted() {
		s.moveTo(messages.SocketIdle, nil)
		return
	}
	s.sockDial()
}

// fail enters SocketFailed: the connection is closed (with code when
// non-zero), every listener ends with err, every waiter gets err.
func (s *socketConn) fail(err error, code int) {
	s.log.Warn("socket: terminal error", zap.Error(err))
	s.dropConn(code, "")
	s.moveTo(messages.SocketFailed, err)
	s.failAll(err)
}

// sockShutdown enters SocketClosed (Disconnect or Stopping).
func (s *socketConn) sockShutdown(err error, graceful bool) {
	if s.state == messages.SocketClosed {
		return
	}
	code := 0
	if graceful && s.link.pump != nil {
		code = websocket.CloseNormalClosure
	}
	s.cancelLinger()
	s.dropConn(code, "")
	s.moveTo(messages.SocketClosed, err)
	s.pinned = false
	s.failAll(err)
}

func (s *socketConn) failAll(err error) {
	for id, l := range s.listeners {
		delete(s.listeners, id)
		s.droppedClosed += l.Dropped()
		l.sockEnd(err)
	}
	for id := range s.pending {
		p := s.resolve(id)
		s.reply(p.sender, err)
	}
	// Buffered emits without an ack were answered when buffered (counted
	// as dropped now); those with one were failed through s.pending above.
	s.dropEmits()
	for _, w := range s.connectWaiters {
		s.reply(w, err)
	}
	s.connectWaiters = nil
}

func (s *socketConn) cancelLinger() {
	s.lingerSeq++
	if s.lingerTmr != nil {
		s.lingerTmr.Stop()
		s.lingerTmr = nil
	}
}

// sockMaybeIdle closes a lazy connection nobody wants any more: leave and
// close 1000 after the linger (now when expired is true or linger is 0).
func (s *socketConn) sockMaybeIdle(expired bool) {
	if s.wanted() {
		return
	}
	switch s.state {
	case messages.SocketConnecting, messages.SocketReconnecting:
		if s.link.pump == nil {
			s.dropConn(0, "")
			s.moveTo(messages.SocketIdle, nil)
			return
		}
	case messages.SocketConnected:
	default:
		return
	}
	if !expired && s.cfg.Linger > 0 {
		if s.lingerTmr == nil {
			seq := s.lingerSeq
			s.lingerTmr = s.clock.AfterFunc(s.cfg.Linger, func() { s.sys.Root.Send(s.self, &sockLingerTick{sockOwned: sockOwned{s}, seq: seq}) })
		}
		return
	}
	if s.established() && s.cfg.JoinID != "" {
		_ = s.sendOp(wire.Leave{ID: s.newID(), Channel: s.cfg.JoinID})
	}
	delete(s.positions, s.cfg.JoinID)
	s.attempt = 0
	s.dropConn(websocket.CloseNormalClosure, "")
	s.moveTo(messages.SocketIdle, nil)
}

// onLost classifies a read error of the live connection.
func (s *socketConn) onLost(err error) {
	var ce *websocket.CloseError
	class := wire.CloseRetry
	if errors.As(err, &ce) {
		class = s.codec.CloseClass(ce.Code)
	}
	switch {
	case class == wire.CloseRefresh:
		s.rejectedBy(err)
	case class == wire.CloseTerminal:
		s.fail(&messages.SocketCloseError{Code: ce.Code, Reason: ce.Text}, 0)
	case errors.Is(err, websocket.ErrReadLimit):
		s.fail(&messages.SocketCloseError{Code: websocket.CloseMessageTooBig, Reason: "frame too big", Err: err}, 0)
	default:
		s.log.Info("socket: connection lost", zap.Error(err))
		s.connLost(err)
	}
}

// errCredentialsChanged is the cause of a reconnect made to carry new
// credentials (wire.UpdateReconnecter).
var errCredentialsChanged = errors.New("pigeon/actors: socket: credentials changed; reconnecting with them")

// updateByReconnect reports whether the codec carries new credentials by
// reconnecting (socket.io's default) instead of an update on the live
// connection.
func (s *socketConn) updateByReconnect() bool {
	r, ok := s.codec.(wire.UpdateReconnecter)
	return ok && r.UpdateByReconnect()
}

// reconnectForUpdate closes the live connection without ending the
// session (a plain websocket close: the server keeps the session for
// connection state recovery, which an explicit disconnect would drop)
// and, once the old connection is closed (so the server has stored the
// session), connects again with the new credentials and the pid and
// offset to resume from. Emits meanwhile wait in the buffer.
func (s *socketConn) reconnectForUpdate() {
	if !s.credentialsChanged() {
		s.link.initVer = s.headersVer // nothing the server would see changed
		return
	}
	pump := s.link.pump
	s.log.Info("socket: credentials changed; reconnecting with them")
	s.dropConn(websocket.CloseNormalClosure, "credentials changed")
	s.nextDelay = 0
	s.moveTo(messages.SocketReconnecting, errCredentialsChanged)
	gen, sys, self, wait := s.gen, s.sys, s.self, s.cfg.WriteTimeoutOrDefault()
	s.closers.Add(1)
	go func() {
		defer s.closers.Done()
		if pump != nil {
			t := time.NewTimer(wait)
			select {
			case <-pump.Done():
			case <-t.C:
			}
			t.Stop()
		}
		sys.Root.Send(self, &sockRedial{sockOwned: sockOwned{s}, gen: gen})
	}()
}

// credentialsChanged reports whether the CONNECT the current headers make
// differs from the one this connection was opened with (only the auth
// payload travels in it: a header the payload does not carry changes
// nothing the server checks, so it is no reason to reconnect).
func (s *socketConn) credentialsChanged() bool {
	now, err := s.codec.Encode(wire.Init{Headers: s.headers})
	if err != nil {
		return true // the next CONNECT reports it
	}
	was, err := s.codec.Encode(wire.Init{Headers: s.link.sio.headers})
	return err != nil || len(now) != len(was) || len(now) > 0 && !bytes.Equal(now[0].Data, was[0].Data)
}

// sockRedial: the connection closed for new credentials is gone; dial.
type sockRedial struct {
	sockOwned
	gen uint64
}

func (*sockRedial) IgnoreDeadLetterLogging() {}

func (m *sockRedial) handle(s *socketConn) {
	if m.gen != s.gen || s.state != messages.SocketReconnecting || s.link.dial != nil || s.reconnectTmr != nil {
		return // something else happened meanwhile (Disconnect, a newer connection)
	}
	if !s.wanted() {
		s.moveTo(messages.SocketIdle, nil)
		return
	}
	s.sockDial()
}
