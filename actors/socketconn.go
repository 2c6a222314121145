package actors

import (
	"context"
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
	// sockEmitWatch: time to look for kept emits written on connection
	// gen that got no ack within the ack timeout.
	sockEmitWatch struct {
		sockOwned
		gen uint64
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
func (*sockReconnectTick) IgnoreDeadLetterLogging() {}
func (*sockPingTick) IgnoreDeadLetterLogging()      {}
func (*sockLingerTick) IgnoreDeadLetterLogging()    {}
func (*sockAckTimeout) IgnoreDeadLetterLogging()    {}
func (*sockEmitWatch) IgnoreDeadLetterLogging()     {}
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
// A kept emit (pigeon.v1, or socket.io with EmitRetries) stays in the
// outbox after it is written, until the server acks it, and is written
// again on every new connection (and, socket.io, after each try's ack
// timeout) with the same frames: the same emitId / ack id.
type sockOutgoing struct {
	op      wire.Emit
	frames  []wire.Frame
	sender  *actor.PID
	wantAck bool
	kept    bool
	// answered: a plain emit buffered while disconnected, whose Emit
	// already returned nil.
	answered  bool
	size      int
	sentGen   uint64    // the connection it was last written on (0: none)
	tries     int       // times written
	writtenAt time.Time // when it was last written
	// pend is the pending entry of a kept emit that asked for no ack,
	// allocated with it.
	pend sockPending
}

// sockLink is the state of one connection: the dial under way, then the
// pump and handshake of the connection it made. dropConn resets it as one
// value, so nothing of an old connection leaks into the next.
type sockLink struct {
	dial     *sockDial
	pump     *ws.Pump
	initSent bool
	initID   string
	initVer  uint64 // headersVer the init (or last update) carried
	session  string
	joining  bool // the JoinID join is sent and its ack not yet received
	// recovered: the join ack said the server replayed what was missed.
	recovered    bool
	lastRx       time.Time
	pingInterval time.Duration
	pingGrace    time.Duration
	pingTimer    ws.Timer
	upSince      time.Time // init_ack; zero until then
	sio          sioLink   // socket.io: binary packet assembly, resumed pid
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

	// state changes only in moveTo.
	state   messages.SocketState
	termErr error
	pinned  bool  // Connect received (or eager): stay connected
	everUp  bool  // a connection was up (and joined) once
	lastErr error // why the last connection attempt failed or the last connection ended

	// status and statusOwner: the feed this incarnation publishes into.
	status      *SocketStatusFeed
	statusOwner uint64
	// authSub is the AuthStore subscription (0: none or not yet answered).
	authSub uint64

	// panicked is a user callback's panic caught while handling the
	// current message; Receive turns it into a terminal error afterwards.
	panicked error
	// crash is the panic that is about to make the supervisor restart
	// this incarnation (recorded by Receive, reported on Restarting).
	crash any

	gen         uint64
	link        sockLink
	sio         sioSession // socket.io connection state recovery
	dialWG      sync.WaitGroup
	closers     sync.WaitGroup // goroutines shutting old pumps down gracefully
	drains      sync.WaitGroup // inbox drainers (sockInbox), started by pump readers
	attempt     int
	rejections  int
	rejected    http.Header // non-nil: the next header fetch passes it
	rejectCause error       // the rejection that asked for fresh headers

	headers    http.Header
	headersVer uint64

	reconnectTmr  ws.Timer
	nextDelay     time.Duration // the delay reconnectTmr waits
	lingerTmr     ws.Timer
	lingerSeq     uint64
	nextID        uint64
	pending       map[string]*sockPending
	outbox        []*sockOutgoing
	outboxBytes   int
	positions     map[string]wire.Position
	duplicates    uint64
	droppedClosed uint64 // drops of listeners already removed

	// emitStream names this incarnation's emits (pigeon.v1 emitId
	// "<stream>-<n>"); emitSeq numbers them.
	emitStream   string
	emitSeq      uint64
	emitsDropped uint64 // emits given up on after Emit returned nil
	emitsResent  uint64
	// emitWatch is the one ack-timeout timer of the kept emits written on
	// connection emitWatchGen (armed for the oldest of them).
	emitWatch    ws.Timer
	emitWatchGen uint64

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
	case *messages.AuthSubscription:
		if s.authSub == 0 && s.cfg.AuthStore != nil {
			s.authSub = m.ID
		}
	case *messages.TokensChanged:
		s.onTokens(m)
	case *messages.AuthChanged:
		// The tokens say all a socket needs (TokensChanged).
	case *sockDialResult:
		s.onDialResult(m)
	case *sockInbound:
		if m.gen == s.gen && s.link.pump != nil {
			s.onInbound(m)
		}
	case *sockReconnectTick:
		if m.gen == s.gen && s.state == messages.SocketReconnecting {
			s.reconnectTmr = nil
			s.sockDial()
		}
	case *sockPingTick:
		if m.gen == s.gen && s.link.pump != nil {
			s.onPingTick()
		}
	case *sockLingerTick:
		if m.seq == s.lingerSeq {
			s.lingerTmr = nil
			s.sockMaybeIdle(true)
		}
	case *sockAckTimeout:
		s.onAckTimeout(m.id)
	case *sockEmitWatch:
		s.onEmitWatch(m)
	case sockLocal:
		m.handle(s)
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
	s.emitStream = newEmitStream()
	s.status = s.cfg.Status
	if s.status == nil {
		s.status = NewSocketStatusFeed() // nobody reads it: one place publishes all the same
	}
	s.statusOwner = s.status.claim()
	s.moveTo(messages.SocketIdle, nil)
	for _, l := range s.cfg.Listeners {
		if l.sockAdopt(s.sys, s.self) {
			s.listeners[l.id] = l
		}
	}
	if err := s.rawCfg.Validate(); err != nil {
		s.moveTo(messages.SocketFailed, err)
		s.failAll(err)
		return
	}
	if s.cfg.AuthStore != nil {
		// Follow the account's tokens: a change made anywhere (this
		// client, another, a message sent straight to the store) reaches
		// the connection.
		ctx.Request(s.cfg.AuthStore, &messages.SubscribeAuth{PID: s.self, Tokens: true})
	}
	if !s.cfg.Lazy {
		s.pinned = true
	}
	if s.wanted() {
		s.sockDial()
	}
}

// moveTo is the one place the state changes; it publishes the new status
// (SocketFailed is published as SocketClosed with the terminal error).
// cause is the terminal error for SocketFailed, the reason for
// SocketClosed, and why the connection or attempt ended for
// SocketReconnecting (whose Delay and Attempt are already set). Connected
// is published by announceConnected once JoinID is joined, so a
// subscriber that sees it can use the connection.
func (s *socketConn) moveTo(st messages.SocketState, cause error) {
	prev := s.state
	s.state = st
	if st == messages.SocketClosed && prev == messages.SocketFailed {
		return // already published as SocketClosed with the terminal error
	}
	status := messages.SocketStatus{State: st, EmitsDropped: s.emitsDropped}
	switch st {
	case messages.SocketConnected:
		return // announceConnected
	case messages.SocketConnecting:
		status.Attempt = s.attempt
	case messages.SocketReconnecting:
		status.Attempt, status.Delay, status.Err = s.attempt, s.nextDelay, cause
	case messages.SocketFailed:
		s.termErr = cause
		status.State, status.Err = messages.SocketClosed, cause
		status.EmitsDropped += s.unsettledPlain() // failAll drops them next
	case messages.SocketClosed:
		status.Err = cause
		status.EmitsDropped += s.unsettledPlain()
	}
	s.status.publish(s.statusOwner, status)
}

// announceConnected publishes SocketConnected once the connection is up
// and joined.
func (s *socketConn) announceConnected() {
	s.status.publish(s.statusOwner, messages.SocketStatus{State: messages.SocketConnected, Recovered: s.link.recovered, EmitsDropped: s.emitsDropped})
}

// sockStop ends everything with err (Stopping, Restarting) and waits for
// every goroutine this incarnation started.
func (s *socketConn) sockStop(err error) {
	s.sockShutdown(err, false)
	if s.authSub != 0 {
		s.sys.Root.Send(s.cfg.AuthStore, &messages.UnsubscribeAuth{ID: s.authSub})
		s.authSub = 0
	}
	s.dialWG.Wait()
	s.closers.Wait() // every pump's reader has ended: no drainer starts after this
	s.drains.Wait()
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
	return s.state == messages.SocketConnected && s.link.pump != nil
}

func (s *socketConn) newID() string {
	s.nextID++
	return strconv.FormatUint(s.nextID, 10)
}
