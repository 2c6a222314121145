package backend

import (
	"log/slog"
	"net/http"
	"time"
)

// Option configures a Backend built by New. Options are applied in order; a
// later option overrides an earlier one. An out-of-range value (negative
// duration, non-positive size) is ignored and the default is kept.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Default values of the configuration.
const (
	DefaultAccessTTL    = 15 * time.Minute
	DefaultPingInterval = 25 * time.Second
	DefaultInitTimeout  = 10 * time.Second
	DefaultHistorySize  = 256
	DefaultMaxFrame     = 65536
	DefaultSendQueue    = 1024
	DefaultWriteTimeout = 10 * time.Second
)

type config struct {
	accessTTL     time.Duration
	refreshTTL    time.Duration
	clock         func() time.Time
	pingInterval  time.Duration
	idleGrace     time.Duration
	initTimeout   time.Duration
	historySize   int
	maxFrame      int64
	sendQueue     int
	writeTimeout  time.Duration
	refreshHook   func(w http.ResponseWriter, r *http.Request) bool
	jwt           bool
	closeOnExpiry bool
	reuseInterval time.Duration
	logger        *slog.Logger
	emitWindow    int
	emitObserver  func(EmitRecord)
}

func defaultConfig() config {
	return config{
		accessTTL:    DefaultAccessTTL,
		clock:        time.Now,
		pingInterval: DefaultPingInterval,
		initTimeout:  DefaultInitTimeout,
		historySize:  DefaultHistorySize,
		maxFrame:     DefaultMaxFrame,
		sendQueue:    DefaultSendQueue,
		writeTimeout: DefaultWriteTimeout,
		logger:       slog.New(slog.DiscardHandler),
		emitWindow:   DefaultEmitDedupeWindow,
	}
}

// WithEmitDedupeWindow sets how many emit ids (payload `emitId`) the
// Backend remembers: an emit resent with a remembered id is acknowledged
// with its first position and not published again. A resend that comes
// after more than n other emits with ids is published again. Zero value
// (or n <= 0) means DefaultEmitDedupeWindow (65536).
func WithEmitDedupeWindow(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.emitWindow = n
		}
	})
}

// WithEmitObserver calls f once for every emit the Backend publishes (a
// duplicate emitId is not published, so not observed), on the sending
// connection's goroutine: f must be fast and safe for concurrent use. Zero
// value: none.
func WithEmitObserver(f func(EmitRecord)) Option {
	return optionFunc(func(c *config) { c.emitObserver = f })
}

// WithAccessTTL sets the lifetime of issued access tokens. Zero value (or a
// negative one) means DefaultAccessTTL (15 min).
func WithAccessTTL(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.accessTTL = d
		}
	})
}

// WithRefreshTTL sets the lifetime of issued refresh tokens. Zero value means
// refresh tokens never expire (they are still single-use: every refresh
// rotates them).
func WithRefreshTTL(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d >= 0 {
			c.refreshTTL = d
		}
	})
}

// WithClock injects the clock used for every token expiry decision and every
// timestamp in answers. Nil means time.Now. Websocket deadlines (init
// timeout, idle timeout, write deadlines) always use the real clock, because
// the network does.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.clock = now
		}
	})
}

// WithPingInterval sets the websocket heartbeat: the server sends a `pong`
// frame every interval and announces the interval in `init_ack`. A client that
// sends nothing for interval + grace (see WithIdleGrace) is closed with 4000.
// Zero value means DefaultPingInterval (25 s).
func WithPingInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.pingInterval = d
		}
	})
}

// WithIdleGrace sets the grace added to the ping interval before an idle
// client is disconnected. Zero value means one ping interval.
func WithIdleGrace(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.idleGrace = d
		}
	})
}

// WithInitTimeout sets how long a new websocket may take to send `init`
// before it is closed with 4002. Zero value means DefaultInitTimeout (10 s).
func WithInitTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.initTimeout = d
		}
	})
}

// WithHistorySize sets how many events each room keeps for recovery (`join`
// with `since`) and for GET /chat/ghost/messages. Zero value means
// DefaultHistorySize (256).
func WithHistorySize(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.historySize = n
		}
	})
}

// WithMaxFrame sets the largest client frame accepted, in bytes; a bigger
// one closes the connection with 1009. Zero value means DefaultMaxFrame
// (65536).
func WithMaxFrame(n int64) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxFrame = n
		}
	})
}

// WithSendQueue sets the capacity of each connection's outgoing frame queue.
// Overflow policy: the connection is closed with 4001 (slow consumer); the
// publisher never blocks. A connection's own requests are throttled instead:
// replies to its frames (and the room for its own join replay or emitted
// event) are waited for before its next frame is read (TCP backpressure), so
// a client flooding emits is slowed, not closed; only events published by
// others can overflow its queue. Zero value means DefaultSendQueue (1024).
func WithSendQueue(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.sendQueue = n
		}
	})
}

// WithWriteTimeout sets the deadline of each websocket write. Zero value
// means DefaultWriteTimeout (10 s).
func WithWriteTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.writeTimeout = d
		}
	})
}

// WithRefreshHook installs a hook that sees every POST /auth/refresh after
// it is counted in Stats().RefreshCalls and before it is processed. If the
// hook returns true it has answered the request itself (for example with a
// 503, or by blocking until r.Context() is done to simulate a hang) and the
// backend does nothing more. r.Context() is cancelled when the client goes
// away or the Backend is closed. The hook is called concurrently from many
// requests. Nil (the zero value) means no hook.
func WithRefreshHook(hook func(w http.ResponseWriter, r *http.Request) bool) Option {
	return optionFunc(func(c *config) { c.refreshHook = hook })
}

// WithRefreshReuseInterval lets a rotated refresh token be used again for
// d after its first use (each use answers with new tokens), as an identity
// provider's "refresh token reuse interval" or grace period does. Zero
// value: a used refresh token is rejected at once (invalid_grant).
func WithRefreshReuseInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.reuseInterval = max(d, 0) })
}

// WithJWTAccessTokens makes access tokens JWT-shaped
// (header.payload.signature, HS256 with a per-Backend random key) carrying
// `sub`, `iat`, `exp` and `jti` claims, so that a client can read `exp`
// without verifying. The backend still keeps its own record of every token
// (ExpireAccessToken and RevokeAccessToken work the same). Zero value
// (option absent): opaque random tokens.
func WithJWTAccessTokens() Option {
	return optionFunc(func(c *config) { c.jwt = true })
}

// WithCloseOnExpiry makes a live websocket enforce its access token's
// expiry: a frame other than `ping` or `update` arriving after the token
// expired (by the injected clock) closes the connection with 4003. Zero value
// (option absent): the token is only checked at `init` and `update`.
func WithCloseOnExpiry() Option {
	return optionFunc(func(c *config) { c.closeOnExpiry = true })
}

// WithLogger sets the logger for connection-level diagnostics (never tokens).
// Nil (the zero value) discards logs.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}
