package actors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// NewSocketConnProps returns the Props of a SocketConn actor: one websocket
// connection with reconnects, header updates, channel join/resume and
// bounded listener queues, speaking cfg.Codec. Its protocol is in
// messages/socket.go (Connect, Disconnect, UpdateHeaders, Listen, Unlisten,
// Emit, GetState). An invalid cfg (see SocketConfig.Validate) puts the
// actor in SocketFailed with the validation error, which every request then
// gets. Stopping the actor closes the connection, fails pending requests
// with messages.ErrClosed, closes every listener and waits for every
// goroutine it started.
func NewSocketConnProps(cfg SocketConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &socketConn{rawCfg: cfg}
	}, actor.WithMailbox(newInlineMailbox))
}

// Internal messages. Each carries the incarnation that sent it (sockOwned:
// after a restart the new incarnation drops what the old one's goroutines
// and timers still deliver) and the connection generation it belongs to; a
// stale one (older generation) is dropped.
type (
	sockDialResult struct {
		sockOwned
		gen     uint64
		dial    *sockDial
		err     error
		headers http.Header // the headers used (fetched or cached)
		fetched bool        // headers came from the header source
		ver     uint64      // headersVer when the dial started
	}
	sockFrame struct {
		sockOwned
		gen   uint64
		frame wire.Frame
	}
	sockLost struct {
		sockOwned
		gen uint64
		err error
	}
	sockReconnectTick struct {
		sockOwned
		gen uint64
	}
	sockPingTick struct {
		sockOwned
		gen uint64
	}
	sockLingerTick struct {
		sockOwned
		seq uint64
	}
	sockAckTimeout struct {
		sockOwned
		id string
	}
	sockCloserDone struct{ sockOwned }
)

// sockOwned names the actor incarnation an internal message belongs to.
type sockOwned struct{ owner *socketConn }

func (o sockOwned) ownedBy(s *socketConn) bool { return o.owner == s }

// sockInternal is implemented by every internal message.
type sockInternal interface{ ownedBy(*socketConn) bool }

// Timers and goroutines may deliver these after the actor stopped: such a
// dead letter is expected, not worth a log line.
func (*sockDialResult) IgnoreDeadLetterLogging()    {}
func (*sockFrame) IgnoreDeadLetterLogging()         {}
func (*sockLost) IgnoreDeadLetterLogging()          {}
func (*sockReconnectTick) IgnoreDeadLetterLogging() {}
func (*sockPingTick) IgnoreDeadLetterLogging()      {}
func (*sockLingerTick) IgnoreDeadLetterLogging()    {}
func (*sockAckTimeout) IgnoreDeadLetterLogging()    {}
func (*sockCloserDone) IgnoreDeadLetterLogging()    {}

// sockDial hands a dialed conn from the dial goroutine to the actor, or
// closes it when the actor abandoned the dial (stale or stopping).
type sockDial struct {
	mu        sync.Mutex
	conn      *websocket.Conn
	abandoned bool
	cancel    context.CancelFunc
}

func (d *sockDial) take() *websocket.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.conn
	d.conn = nil
	return c
}

func (d *sockDial) abandon() {
	d.cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.abandoned = true
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
}

type sockReqKind int

const (
	sockReqInit sockReqKind = iota
	sockReqJoin
	sockReqUpdate
	sockReqLeave
	sockReqEmit
)

// sockPending is a request waiting for the server's Ack/Error.
type sockPending struct {
	kind    sockReqKind
	gen     uint64 // connection it was sent on (not for emits)
	sender  *actor.PID
	timer   ws.Timer
	channel string
	since   wire.Position
}

// sockOutgoing is an emit, encoded once when it arrives (frames) and
// buffered while disconnected. op keeps its identity only (Data is nil).
type sockOutgoing struct {
	op      wire.Emit
	frames  []wire.Frame
	sender  *actor.PID
	wantAck bool
	size    int
}

type socketConn struct {
	rawCfg SocketConfig
	cfg    SocketConfig
	codec  wire.Codec
	log    *zap.Logger
	clock  ws.Clock
	bo     *ws.Backoff
	sys    *actor.ActorSystem
	self   *actor.PID

	state   messages.SocketState
	termErr error
	pinned  bool  // Connect received (or eager): stay connected
	joining bool  // the JoinID join is sent and its ack not yet received
	everUp  bool  // a connection was up (and joined) once
	lastErr error // why the last connection attempt failed or the last connection ended

	// panicked is a user callback's panic caught while handling the
	// current message; Receive turns it into a terminal error afterwards.
	panicked error
	// crash is the panic that is about to make the supervisor restart
	// this incarnation (recorded by Receive, reported on Restarting).
	crash any

	gen         uint64
	dial        *sockDial
	dialWG      sync.WaitGroup
	pump        *ws.Pump
	closers     sync.WaitGroup // goroutines shutting old pumps down gracefully
	initSent    bool
	initID      string
	initVer     uint64
	session     string
	attempt     int
	rejections  int
	rejected    http.Header // non-nil: the next header fetch passes it
	rejectCause error       // the rejection that asked for fresh headers

	headers    http.Header
	headersVer uint64

	lastRx        time.Time
	pingInterval  time.Duration
	pingGrace     time.Duration
	pingTimer     ws.Timer
	reconnectTmr  ws.Timer
	lingerTmr     ws.Timer
	lingerSeq     uint64
	nextID        uint64
	pending       map[string]*sockPending
	outbox        []*sockOutgoing
	outboxBytes   int
	positions     map[string]wire.Position
	duplicates    uint64
	droppedClosed uint64 // drops of listeners already removed

	listeners      map[uint64]*SocketListener
	connectWaiters []*actor.PID
}

func (s *socketConn) Receive(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.crash = r // for Restarting; the supervisor decides
			panic(r)
		}
	}()
	msg := ctx.Message()
	if im, ok := msg.(sockInternal); ok && !im.ownedBy(s) {
		return // sent to an earlier incarnation
	}
	s.receive(ctx, msg)
	if err := s.panicked; err != nil {
		s.panicked = nil
		if s.state != messages.SocketClosed && s.state != messages.SocketFailed {
			s.fail(err, websocket.CloseNormalClosure)
		}
	}
}

func (s *socketConn) receive(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case *actor.Started:
		s.sockStart(ctx)
	case *actor.Stopping:
		s.sockStop(messages.ErrClosed)
	case *actor.Restarting:
		err := fmt.Errorf("pigeon/actors: socket: %w", messages.ErrActorRestarted)
		if s.crash != nil {
			err = fmt.Errorf("pigeon/actors: socket: %w after a panic: %v", messages.ErrActorRestarted, s.crash)
		}
		s.sockStop(err)
	case *messages.Connect:
		s.onConnect(ctx)
	case *messages.Disconnect:
		err := messages.ErrClosed
		if m.Err != nil {
			err = m.Err
		}
		s.sockShutdown(err, true)
		s.sockRespond(ctx, ctx.Sender(), &messages.Disconnected{})
	case *messages.UpdateHeaders:
		s.onUpdateHeaders(ctx, m)
	case *messages.Listen:
		s.onListen(ctx, m)
	case *messages.Unlisten:
		s.onUnlisten(m.ID)
		s.sockRespond(ctx, ctx.Sender(), &messages.Unlistened{})
	case *messages.Emit:
		s.onEmit(ctx, m)
	case *messages.GetState:
		s.sockRespond(ctx, ctx.Sender(), s.snapshot())
	case *sockDialResult:
		s.onDialResult(m)
	case *sockFrame:
		if m.gen == s.gen && s.pump != nil {
			s.onFrame(m.frame)
		}
	case *sockLost:
		if m.gen == s.gen && s.pump != nil {
			s.onLost(m.err)
		}
	case *sockReconnectTick:
		if m.gen == s.gen && s.state == messages.SocketReconnecting {
			s.reconnectTmr = nil
			s.sockDial()
		}
	case *sockPingTick:
		if m.gen == s.gen && s.pump != nil {
			s.onPingTick()
		}
	case *sockLingerTick:
		if m.seq == s.lingerSeq {
			s.lingerTmr = nil
			s.sockMaybeIdle(true)
		}
	case *sockAckTimeout:
		s.onAckTimeout(m.id)
	case *sockCloserDone:
	}
}

func (s *socketConn) sockRespond(ctx actor.Context, to *actor.PID, msg any) {
	if to != nil {
		ctx.Send(to, sockReplyValue(msg))
	}
}

func (s *socketConn) reply(to *actor.PID, msg any) {
	if to != nil {
		s.sys.Root.Send(to, sockReplyValue(msg))
	}
}

// sockReplyValue wraps an error reply in *messages.Failure, which is not
// logged as a dead letter when the asker has given up.
func sockReplyValue(msg any) any {
	if err, ok := msg.(error); ok {
		if _, isFailure := err.(*messages.Failure); !isFailure {
			return &messages.Failure{Err: err}
		}
	}
	return msg
}

func (s *socketConn) sockStart(ctx actor.Context) {
	s.sys = ctx.ActorSystem()
	s.self = ctx.Self()
	s.cfg = s.rawCfg.withDefaults()
	s.codec = s.cfg.Codec
	s.log = s.cfg.Logger.With(zap.String("actor", "socketconn"), zap.String("codec", s.codec.Name()))
	s.clock = s.cfg.Clock
	s.bo = ws.NewBackoff(s.cfg.BackoffBase, s.cfg.BackoffMax, s.cfg.Rand)
	s.headers = s.cfg.InitialHeaders.Clone()
	s.pending = map[string]*sockPending{}
	s.positions = map[string]wire.Position{}
	s.listeners = map[uint64]*SocketListener{}
	s.state = messages.SocketIdle
	for _, l := range s.cfg.Listeners {
		if l.sockAdopt(s.sys, s.self) {
			s.listeners[l.id] = l
		}
	}
	if err := s.rawCfg.Validate(); err != nil {
		s.state = messages.SocketFailed
		s.termErr = err
		s.failAll(err)
		return
	}
	if !s.cfg.Lazy {
		s.pinned = true
	}
	if s.wanted() {
		s.sockDial()
	}
}

// sockStop ends everything with err (Stopping, Restarting) and waits for
// every goroutine this incarnation started.
func (s *socketConn) sockStop(err error) {
	s.sockShutdown(err, false)
	s.dialWG.Wait()
	s.closers.Wait()
}

// wanted reports whether a connection is wanted now: pinned, listened to,
// or with emits buffered or waiting for their ack.
func (s *socketConn) wanted() bool {
	if s.pinned || len(s.listeners) > 0 || len(s.outbox) > 0 {
		return true
	}
	for _, p := range s.pending {
		if p.kind == sockReqEmit {
			return true
		}
	}
	return false
}

func (s *socketConn) established() bool {
	return s.state == messages.SocketConnected && s.pump != nil
}

func (s *socketConn) newID() string {
	s.nextID++
	return strconv.FormatUint(s.nextID, 10)
}

// ---- requests ----

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
		s.state = messages.SocketIdle
	}
	s.pinned = true
	s.cancelLinger()
	if s.established() && !s.joining {
		s.sockRespond(ctx, ctx.Sender(), &messages.Connected{Session: s.session})
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
	op := wire.Update{ID: s.newID(), Headers: s.headers.Clone()}
	if s.codec.ExpectsReply(op) {
		s.track(op.ID, &sockPending{kind: sockReqUpdate, gen: s.gen})
	}
	if err := s.sendOp(op); err != nil {
		s.log.Warn("socket: sending update failed", zap.Error(err))
		return false
	}
	s.initVer = s.headersVer
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
	op := wire.Emit{Event: m.Event, Channel: ch, Data: m.Data}
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
	size := len(op.Data)
	op.Data = nil
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
		if p.gen == s.gen && s.pump != nil {
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

// ---- connection lifecycle ----

// sockDial starts a dial off the mailbox.
func (s *socketConn) sockDial() {
	s.gen++
	s.state = messages.SocketConnecting
	gen := s.gen
	ctx, cancel := context.WithCancel(context.Background())
	d := &sockDial{cancel: cancel}
	s.dial = d
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
		conn, err := ws.Dial(ctx, url, dcfg)
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
	if m.gen != s.gen || s.state != messages.SocketConnecting || s.dial != m.dial {
		m.dial.abandon()
		return
	}
	s.dial = nil
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
	sys, self := s.sys, s.self
	s.pump = ws.NewPump(conn, ws.PumpConfig{
		OnFrame:      func(f wire.Frame) { sys.Root.Send(self, &sockFrame{sockOwned: sockOwned{s}, gen: gen, frame: f}) },
		OnReadError:  func(err error) { sys.Root.Send(self, &sockLost{sockOwned: sockOwned{s}, gen: gen, err: err}) },
		WriteTimeout: s.cfg.WriteTimeout,
		QueueSize:    s.cfg.WriteQueue,
	})
	s.initSent = false
	s.pingInterval, s.pingGrace = s.cfg.PingInterval, s.cfg.PingGrace
	s.lastRx = s.clock.Now()
	s.armPing(s.pingInterval)
	if s.codec.Name() == wire.SocketIOName {
		// Engine.IO's open packet comes first; Init follows it. Bound the
		// wait like an init.
		s.track(s.newID(), &sockPending{kind: sockReqInit, gen: gen})
		return
	}
	s.sendInit()
}

func (s *socketConn) sendInit() {
	s.initSent = true
	op := wire.Init{ID: s.newID(), Headers: s.headers.Clone()}
	s.initID = op.ID
	s.initVer = s.headersVer
	if s.codec.ExpectsReply(op) {
		s.track(op.ID, &sockPending{kind: sockReqInit, gen: s.gen})
	}
	if err := s.sendOp(op); err != nil {
		s.connLost(err)
	}
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
	if s.pump == nil {
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
		if err := s.pump.Send(f); err != nil {
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
	if s.pingTimer != nil {
		s.pingTimer.Stop()
	}
	gen := s.gen
	s.pingTimer = s.clock.AfterFunc(d, func() { s.sys.Root.Send(s.self, &sockPingTick{sockOwned: sockOwned{s}, gen: gen}) })
}

func (s *socketConn) onPingTick() {
	s.pingTimer = nil
	now := s.clock.Now()
	deadline := s.lastRx.Add(s.pingInterval + s.pingGrace)
	if !now.Before(deadline) {
		s.log.Info("socket: no server traffic within ping interval + grace; reconnecting")
		s.connLost(fmt.Errorf("pigeon/actors: socket: no server traffic for %s", s.pingInterval+s.pingGrace))
		return
	}
	if s.established() {
		_ = s.sendOp(wire.Ping{T: now.Unix()})
	}
	next := s.pingInterval
	if r := deadline.Sub(now); r < next {
		next = r
	}
	s.armPing(next)
}

// dropConn tears the current connection down (gracefully with code when
// code != 0) and clears the connection-scoped state.
func (s *socketConn) dropConn(code int, text string) {
	s.gen++ // frames and timers of the old connection are stale from now on
	if s.dial != nil {
		s.dial.abandon()
		s.dial = nil
	}
	if s.pingTimer != nil {
		s.pingTimer.Stop()
		s.pingTimer = nil
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
	s.initSent = false
	s.joining = false
	s.session = ""
	if p := s.pump; p != nil {
		// Never wait for the pump here: this handler may be running on
		// the pump's own reader goroutine (see inlineMailbox). A closer
		// goroutine waits instead; Stopping waits for the closers.
		s.pump = nil
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
		s.state = messages.SocketIdle
		return
	}
	if s.cfg.MaxReconnectAttempts > 0 && s.attempt >= s.cfg.MaxReconnectAttempts {
		s.fail(fmt.Errorf("%w after %d attempts: %w", messages.ErrReconnectExhausted, s.attempt, cause), 0)
		return
	}
	delay := s.bo.Delay(s.attempt)
	s.attempt++
	s.state = messages.SocketReconnecting
	gen := s.gen
	s.log.Debug("socket: reconnect scheduled", zap.Duration("delay", delay), zap.Int("attempt", s.attempt), zap.NamedError("cause", cause))
	s.reconnectTmr = s.clock.AfterFunc(delay, func() { s.sys.Root.Send(s.self, &sockReconnectTick{sockOwned: sockOwned{s}, gen: gen}) })
}

// rejectedBy handles a credentials rejection: fetch fresh headers once and
// retry at once; a second rejection in a row is terminal.
func (s *socketConn) rejectedBy(cause error) {
	s.lastErr = cause
	rejected := s.headers.Clone()
	s.dropConn(0, "")
	if s.rejections >= 1 {
		s.fail(&messages.SocketRejectedError{Err: cause}, 0)
		return
	}
	s.rejections++
	s.rejectCause = cause
	if rejected == nil {
		rejected = http.Header{}
	}
	s.rejected = rejected
	s.log.Info("socket: credentials rejected; retrying with fresh headers", zap.Error(cause))
	if !s.wanted() {
		s.state = messages.SocketIdle
		return
	}
	s.sockDial()
}

// fail enters SocketFailed: the connection is closed (with code when
// non-zero), every listener ends with err, every waiter gets err.
func (s *socketConn) fail(err error, code int) {
	s.log.Warn("socket: terminal error", zap.Error(err))
	s.dropConn(code, "")
	s.state = messages.SocketFailed
	s.termErr = err
	s.failAll(err)
}

// sockShutdown enters SocketClosed (Disconnect or Stopping).
func (s *socketConn) sockShutdown(err error, graceful bool) {
	if s.state == messages.SocketClosed {
		return
	}
	code := 0
	if graceful && s.pump != nil {
		code = websocket.CloseNormalClosure
	}
	s.cancelLinger()
	s.dropConn(code, "")
	s.state = messages.SocketClosed
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
	// Buffered emits without an ack were answered when buffered; those
	// with one were failed through s.pending above.
	s.outbox, s.outboxBytes = nil, 0
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
		if s.pump == nil {
			s.dropConn(0, "")
			s.state = messages.SocketIdle
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
	s.dropConn(websocket.CloseNormalClosure, "")
	s.state = messages.SocketIdle
	s.attempt = 0
}

// onLost classifies a read error of the live connection.
func (s *socketConn) onLost(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == 4003:
		s.rejectedBy(err)
	case errors.As(err, &ce) && ce.Code >= 4500 && ce.Code <= 4999:
		s.fail(&messages.SocketCloseError{Code: ce.Code, Reason: ce.Text}, 0)
	case errors.Is(err, websocket.ErrReadLimit):
		s.fail(&messages.SocketCloseError{Code: websocket.CloseMessageTooBig, Reason: "frame too big", Err: err}, 0)
	default:
		s.log.Info("socket: connection lost", zap.Error(err))
		s.connLost(err)
	}
}

// ---- inbound frames ----

func (s *socketConn) onFrame(f wire.Frame) {
	s.lastRx = s.clock.Now()
	f, ok := s.intercept(SocketInbound, f)
	if !ok {
		return // dropped (or the interceptor panicked: see Receive)
	}
	msgs, err := s.codec.Decode(f)
	if err != nil {
		s.fail(&messages.SocketCloseError{Code: 4502, Reason: "bad message", Err: err}, 4502)
		return
	}
	gen := s.gen
	for _, m := range msgs {
		if gen != s.gen || s.pump == nil {
			return // the connection was dropped by an earlier message
		}
		s.onMsg(m)
	}
}

func (s *socketConn) onMsg(m wire.Msg) {
	switch m := m.(type) {
	case wire.Open:
		if s.initSent {
			return
		}
		if m.PingInterval > 0 {
			s.pingInterval = time.Duration(m.PingInterval) * time.Millisecond
			if m.PingTimeout > 0 {
				s.pingGrace = time.Duration(m.PingTimeout) * time.Millisecond
			}
			s.armPing(s.pingInterval)
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
	if !s.initSent || s.state == messages.SocketConnected {
		return
	}
	if m.ID != "" && m.ID != s.initID {
		return
	}
	s.resolve(s.initID)
	s.state = messages.SocketConnected
	s.session = m.Session
	s.attempt = 0
	s.rejections = 0
	if m.PingIntervalMs > 0 {
		s.pingInterval = time.Duration(m.PingIntervalMs) * time.Millisecond
		s.armPing(s.pingInterval)
	}
	if s.initVer != s.headersVer {
		s.sendUpdate() // headers changed during the handshake
	}
	if s.cfg.JoinID != "" {
		op := wire.Join{ID: s.newID(), Channel: s.cfg.JoinID, Since: s.positions[s.cfg.JoinID]}
		if s.codec.ExpectsReply(op) {
			s.track(op.ID, &sockPending{kind: sockReqJoin, gen: s.gen, channel: op.Channel, since: op.Since})
			s.joining = true
		}
		if err := s.sendOp(op); err != nil {
			s.connLost(err)
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
	if !s.joining {
		s.answerConnected()
	}
	s.sockMaybeIdle(false)
}

// answerConnected tells the Connect waiters the connection is up (and
// JoinID joined).
func (s *socketConn) answerConnected() {
	s.lastErr = nil
	s.everUp = true
	for _, w := range s.connectWaiters {
		s.reply(w, &messages.Connected{Session: s.session})
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
		if m.Position != (wire.Position{}) {
			s.positions[ch] = m.Position
		}
		if had && prev != (wire.Position{}) && !m.Recovered {
			s.broadcast(messages.SocketEvent{Name: messages.SocketGapEvent, Channel: ch, Position: m.Position, Gap: true}, true)
		}
		if p.gen == s.gen && s.joining && p.channel == s.cfg.JoinID {
			s.joining = false
			s.answerConnected()
		}
	}
}

func (s *socketConn) onServerError(m wire.Error) {
	serr := &messages.SocketServerError{Code: m.Code, Message: m.Message, Retryable: m.Retryable}
	if !s.established() && s.initSent && (m.ID == "" || m.ID == s.initID) {
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
	if m.Position != (wire.Position{}) {
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
		if !l.sockOffer(e, s.cfg.Overflow) {
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
		State: s.state, Err: s.termErr, Generation: s.gen, Attempt: s.attempt, Session: s.session,
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
	case s.dial != nil:
		return "dialing"
	case s.state == messages.SocketConnecting && s.pump != nil:
		return "handshake"
	case s.joining:
		return "joining " + s.cfg.JoinID
	case s.state == messages.SocketReconnecting:
		return "waiting to reconnect"
	}
	return ""
}

// WriteTimeoutOrDefault returns WriteTimeout or ws.DefaultWriteTimeout.
func (c SocketConfig) WriteTimeoutOrDefault() time.Duration {
	if c.WriteTimeout > 0 {
		return c.WriteTimeout
	}
	return ws.DefaultWriteTimeout
}
