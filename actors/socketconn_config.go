package actors

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
	"github.com/apppigeon/pigeon/transport/ws"
)

// SocketConfig defaults.
const (
	DefaultSocketListenerQueue = 256
	DefaultSocketBufferCount   = 64
	DefaultSocketBufferBytes   = 1 << 20
	DefaultSocketAckTimeout    = 10 * time.Second
	DefaultSocketPingInterval  = 25 * time.Second
	DefaultSocketPingGrace     = 10 * time.Second
	DefaultSocketHeaderTimeout = 10 * time.Second
	DefaultSocketStableAfter   = 5 * time.Second
)

// The range a server-sent ping interval or timeout is clamped to (init_ack
// pingIntervalMs, Engine.IO open pingInterval / pingTimeout): a server
// cannot make pigeon ping a thousand times a second, nor wait for ever (a
// huge value would otherwise overflow time.Duration and turn negative).
const (
	MinServerPing = time.Second
	MaxServerPing = 10 * time.Minute
)

// ServerPing turns a server's ping value in milliseconds into a duration
// clamped to [MinServerPing, MaxServerPing]. It never overflows.
func ServerPing(ms int64) time.Duration {
	switch {
	case ms <= MinServerPing.Milliseconds():
		return MinServerPing
	case ms >= MaxServerPing.Milliseconds():
		return MaxServerPing
	}
	return time.Duration(ms) * time.Millisecond
}

// MaxStreamSeq is the largest sequence number used as a stream position
// (2⁵³−1, the largest integer every JSON peer represents exactly). An
// event above it is delivered but not remembered, so a server that sends
// 2⁶⁴−1 once cannot make every later event of its epoch a duplicate.
const MaxStreamSeq = 1<<53 - 1

// SocketDirection says which way an intercepted frame travels.
type SocketDirection int

const (
	// SocketInbound: a frame received from the server, before decoding.
	SocketInbound SocketDirection = iota
	// SocketOutbound: a frame about to be written, after encoding.
	SocketOutbound
)

// SocketInterceptor sees every data frame in and out and may change it
// (return a different frame) or drop it (return false). It runs inside the
// SocketConn actor: it must be fast and must not block. It is called by one
// goroutine at a time.
type SocketInterceptor func(dir SocketDirection, f wire.Frame) (wire.Frame, bool)

// HeaderSource returns the headers for the next handshake/init. It is
// called off the actor's mailbox before every dial. rejected non-nil means
// the server rejected those headers (close 4003, init rejected, HTTP
// 401/403 handshake): return fresh ones (refresh the token). An error
// wrapping messages.ErrSessionExpired, ErrNoAuth or ErrLoggedOut is
// terminal; any other error is retried with backoff.
type HeaderSource func(ctx context.Context, rejected http.Header) (http.Header, error)

// SocketConfig configures one SocketConn actor. Copy semantics: the actor
// keeps its own copy; slices and maps must not be changed after
// NewSocketConnProps.
type SocketConfig struct {
	// URL is the connect URL (ws, wss, http or https). Required.
	URL string
	// Codec speaks the wire protocol. Zero value means wire.ForURL(URL): a
	// path containing "/socket.io" speaks socket.io v4, anything else
	// pigeon.v1.
	Codec wire.Codec
	// Lazy: dial on the first Listen or Emit, and leave + close after the
	// last listener leaves (after Linger). Zero value (false) means eager:
	// dial as soon as the actor starts and stay connected until Disconnect.
	Lazy bool
	// Headers is the header source called before every dial. Zero value
	// means InitialHeaders plus whatever UpdateHeaders delivered.
	Headers HeaderSource
	// InitialHeaders are the headers until Headers or UpdateHeaders provide
	// others. Zero value: none.
	InitialHeaders http.Header
	// HeaderTimeout bounds one Headers call. Zero value means 10s.
	HeaderTimeout time.Duration
	// JoinID is the channel joined after every init_ack (socket.io: the
	// join event's argument). Zero value: join nothing.
	JoinID string
	// ListenerQueue is each listener's queue capacity. Zero value means
	// 256.
	ListenerQueue int
	// Overflow is the policy of a full listener queue. Zero value means
	// messages.OverflowDropOldest.
	Overflow messages.OverflowPolicy
	// BufferCount and BufferBytes bound the emits buffered while
	// disconnected (count and total Data bytes) and, where emits are kept
	// until acked (pigeon.v1; socket.io with EmitRetries), those written
	// but not yet acknowledged. Zero values mean 64 and 1 MiB.
	BufferCount int
	BufferBytes int
	// EmitRetries (socket.io) makes every emit ask for an ack and writes it
	// again, with the same ack id, when a try got no ack within AckTimeout
	// or its connection was lost, up to EmitRetries more times (at least
	// once, as socket.io-client's `retries`); then an EmitWithAck fails with
	// ErrAckTimeout and a plain Emit is counted in EmitsDropped. pigeon.v1
	// ignores it: its emits carry an emitId the server dedupes and are
	// written again after every reconnect until acked (exactly once). Zero
	// value: socket.io emits are written once.
	EmitRetries int
	// AckTimeout bounds every request that expects a server reply (init,
	// join, update, acked emits). Zero value means 10s.
	AckTimeout time.Duration
	// Linger is how long a lazy connection stays open after its last
	// listener left. Zero value means close at once.
	Linger time.Duration
	// PingInterval is the keep-alive interval: a pigeon.v1 client pings
	// every interval, and without any server traffic for
	// PingInterval+PingGrace the connection is considered lost. A server
	// value (init_ack pingIntervalMs, Engine.IO open pingInterval /
	// pingTimeout) overrides, clamped by ServerPing to
	// [MinServerPing, MaxServerPing]. Zero values mean 25s and 10s.
	PingInterval time.Duration
	PingGrace    time.Duration
	// BackoffBase and BackoffMax bound the reconnect delay: attempt n waits
	// uniformly in [0, min(max, base·2ⁿ)]. Zero values mean 200ms and 20s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// StableAfter is how long a connection must stay up (counted from
	// init_ack) to count as healthy: only its loss starts the reconnect
	// backoff and the credential-rejection budget over. A connection lost
	// sooner counts as a failed attempt, so the backoff keeps growing
	// (and MaxReconnectAttempts keeps counting) while a server flaps.
	// Zero value means 5s.
	StableAfter time.Duration
	// FailFast makes a failed attempt terminal (SocketFailed with its
	// error) until a connection has been up and joined once: a caller
	// waiting for the first connection learns why it failed and nothing
	// keeps dialing; a Connect then gets that error rather than starting
	// over. A credentials rejection still gets its one retry with fresh
	// headers. Zero value: retry with backoff from the first attempt.
	FailFast bool
	// MaxReconnectAttempts ends reconnecting with ErrReconnectExhausted
	// after that many consecutive failed attempts (a connection lost
	// before StableAfter counts as one). Zero value: unlimited.
	MaxReconnectAttempts int
	// Clock drives every timer. Zero value means ws.RealClock().
	Clock ws.Clock
	// Rand is the backoff jitter source (only the actor uses it). Zero
	// value means a randomly seeded one.
	Rand *rand.Rand
	// Logger receives the actor's logs. Zero value means zap.NewNop().
	Logger *zap.Logger
	// Observer sees connects, reconnects and dropped events (telemetry,
	// socketconn_obs.go). Zero value: none.
	Observer SocketObserver
	// Interceptors see every frame in and out, in order. A panicking
	// interceptor fails the socket with a *messages.PanicError. Zero value:
	// none.
	Interceptors []SocketInterceptor
	// Listeners (from NewSocketListener) are adopted when the actor starts,
	// before it dials: they see the events the server sends on connect. In
	// lazy mode they make the actor dial at once. Zero value: none.
	Listeners []*SocketListener
	// Status receives every state transition (see SocketStatusFeed). An
	// owner that replaces or reopens its socket gives each actor the same
	// feed. Zero value: the actor keeps a feed of its own nobody reads.
	Status *SocketStatusFeed
	// AuthStore, when set, is the AuthStore whose token changes the
	// connection follows: the actor subscribes (SubscribeAuth with Tokens)
	// and sends an `update` with the new bearer whenever the followed
	// account's access token changes, whoever changed it. A socket with a
	// fixed token, or one that may not carry a bearer, leaves it nil.
	// Zero value: headers change only through UpdateHeaders.
	AuthStore *actor.PID
	// UID is the account followed with AuthStore. Zero value ("") means
	// the current account, whichever it is (a switch brings the new
	// account's token). A bound account whose session ends fails the
	// socket with that session's error (ErrLoggedOut, ErrSessionExpired).
	UID string
	// Dial configures the websocket dial (handshake timeout, read limit,
	// net dialer). Header and Subprotocols are set by the actor from the
	// header source and the codec. Zero value: ws defaults (10s handshake,
	// 1 MiB read limit).
	Dial ws.DialConfig
	// WriteTimeout is the deadline of every write. Zero value means 10s.
	WriteTimeout time.Duration
	// WriteQueue bounds frames waiting for the writer goroutine. Zero value
	// means 256.
	WriteQueue int
}

// Validate reports a configuration the actor cannot run with.
func (c SocketConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("pigeon/actors: socket: URL is required"))
	} else {
		codec := c.Codec
		if codec == nil {
			codec = wire.ForURL(c.URL)
		}
		if _, err := codec.DialURL(c.URL); err != nil {
			errs = append(errs, err)
		}
	}
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, errors.New("pigeon/actors: socket: negative "+name))
		}
	}
	neg("ListenerQueue", int64(c.ListenerQueue))
	neg("BufferCount", int64(c.BufferCount))
	neg("BufferBytes", int64(c.BufferBytes))
	neg("EmitRetries", int64(c.EmitRetries))
	neg("AckTimeout", int64(c.AckTimeout))
	neg("Linger", int64(c.Linger))
	neg("PingInterval", int64(c.PingInterval))
	neg("PingGrace", int64(c.PingGrace))
	neg("MaxReconnectAttempts", int64(c.MaxReconnectAttempts))
	neg("HeaderTimeout", int64(c.HeaderTimeout))
	neg("StableAfter", int64(c.StableAfter))
	if c.Overflow < messages.OverflowDropOldest || c.Overflow > messages.OverflowClose {
		errs = append(errs, errors.New("pigeon/actors: socket: unknown Overflow policy"))
	}
	return errors.Join(errs...)
}

func (c SocketConfig) withDefaults() SocketConfig {
	if c.Codec == nil {
		c.Codec = wire.ForURL(c.URL)
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = DefaultSocketHeaderTimeout
	}
	if c.ListenerQueue == 0 {
		c.ListenerQueue = DefaultSocketListenerQueue
	}
	if c.BufferCount == 0 {
		c.BufferCount = DefaultSocketBufferCount
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultSocketBufferBytes
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultSocketAckTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultSocketPingInterval
	}
	if c.PingGrace == 0 {
		c.PingGrace = DefaultSocketPingGrace
	}
	if c.StableAfter == 0 {
		c.StableAfter = DefaultSocketStableAfter
	}
	if c.Clock == nil {
		c.Clock = ws.RealClock()
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	c.InitialHeaders = c.InitialHeaders.Clone()
	c.Interceptors = append([]SocketInterceptor(nil), c.Interceptors...)
	c.Listeners = append([]*SocketListener(nil), c.Listeners...)
	return c
}

// WriteTimeoutOrDefault returns WriteTimeout or ws.DefaultWriteTimeout.
func (c SocketConfig) WriteTimeoutOrDefault() time.Duration {
	if c.WriteTimeout > 0 {
		return c.WriteTimeout
	}
	return ws.DefaultWriteTimeout
}
