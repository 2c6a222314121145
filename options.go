package pigeon

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/internal/obs"
	"github.com/apppigeon/pigeon/transport"
)

// Option configures NewAuthorized and NewGhost. Options that concern only
// the authorized client (storage, refresh) are ignored by NewGhost.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	baseURL        *url.URL
	storeDir       string
	storeName      string
	encryptionKey  []byte
	inMemory       bool
	logger         *zap.Logger
	system         *actor.ActorSystem
	httpClient     *http.Client
	headers        http.Header
	middleware     []func(http.RoundTripper) http.RoundTripper
	refreshTimeout time.Duration
	refreshAhead   time.Duration
	clock          clock.Clock
	now            func() time.Time // clock.Now
	allowInsecure  bool
	authHosts      []string
	maxBody        int64
	socket         socketConfig
	retry          *RetryPolicy // nil: no retries
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	obs            *obs.Obs    // nil: no telemetry (neither provider set)
	etcd           *etcdConfig // WithEtcd; nil: badger
}

func newConfig(opts []Option) (*config, error) {
	c := &config{logger: zap.NewNop(), maxBody: 32 << 20, storeName: "default"}
	c.socket = defaultSocketConfig()
	c.setClock(clock.Real())
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(c); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// WithBaseURL sets the URL request paths are resolved against, e.g.
// "https://api.example.com/v1/". Zero value: paths must be absolute URLs.
// The bearer token is only sent to this host (and WithAuthHosts).
func WithBaseURL(u string) Option {
	return optionFunc(func(c *config) error {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("pigeon: WithBaseURL: %w", err)
		}
		if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
			return fmt.Errorf("pigeon: WithBaseURL: %q is not an absolute http(s) URL", u)
		}
		c.baseURL = p
		return nil
	})
}

// WithStoreDir keeps the encrypted token store in dir (created 0700). Zero
// value: os.UserConfigDir()/pigeon/default (see WithStoreName).
func WithStoreDir(dir string) Option {
	return optionFunc(func(c *config) error {
		if dir == "" {
			return errors.New("pigeon: WithStoreDir: empty directory")
		}
		c.storeDir = dir
		return nil
	})
}

// WithStoreName changes the name of the default store directory
// (os.UserConfigDir()/pigeon/NAME). Zero value: "default".
func WithStoreName(name string) Option {
	return optionFunc(func(c *config) error {
		if name == "" || name == "." || name == ".." || containsSep(name) {
			return fmt.Errorf("pigeon: WithStoreName: invalid name %q", name)
		}
		c.storeName = name
		return nil
	})
}

func containsSep(s string) bool {
	for _, r := range s {
		if r == '/' || r == '\\' {
			return true
		}
	}
	return false
}

// WithEncryptionKey sets the store's AES key (16, 24 or 32 bytes). Zero
// value: PIGEON_STORE_KEY (base64), else a key generated on first use into
// a 0600 key file beside the data directory.
func WithEncryptionKey(key []byte) Option {
	return optionFunc(func(c *config) error {
		switch len(key) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("pigeon: WithEncryptionKey: key must be 16, 24 or 32 bytes, got %d", len(key))
		}
		c.encryptionKey = append([]byte(nil), key...)
		return nil
	})
}

// WithInMemoryStore keeps tokens in memory only (tests, short-lived
// programs). Zero value: the encrypted on-disk store.
func WithInMemoryStore() Option {
	return optionFunc(func(c *config) error { c.inMemory = true; return nil })
}

// WithLogger sets the logger for pigeon and its actor system. Zero value:
// zap.NewNop(). Tokens never appear in log lines.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) error {
		if l != nil {
			c.logger = l
		}
		return nil
	})
}

// WithActorSystem spawns pigeon's actors in the caller's system (which the
// caller shuts down, after Close). Zero value: pigeon creates its own,
// logging into WithLogger's logger, and shuts it down on Close.
func WithActorSystem(s *actor.ActorSystem) Option {
	return optionFunc(func(c *config) error { c.system = s; return nil })
}

// WithHTTPClient sets the client whose Transport, Timeout, Jar and
// CheckRedirect pigeon builds on (pigeon wraps the Transport; the given
// client is not modified). Zero value: a private clone of
// http.DefaultTransport, closed on Close.
func WithHTTPClient(h *http.Client) Option {
	return optionFunc(func(c *config) error { c.httpClient = h; return nil })
}

// WithHeaders sets default headers sent with every request (and in the
// socket handshake) unless the request sets them. See UpdateHeaders.
func WithHeaders(h map[string]string) Option {
	return optionFunc(func(c *config) error {
		if c.headers == nil {
			c.headers = http.Header{}
		}
		for k, v := range h {
			c.headers.Set(k, v)
		}
		return nil
	})
}

// WithMiddleware adds an HTTP interceptor. Middleware runs inside the auth
// layer: it sees the final request (with Authorization) and every replay.
// The first middleware given is the outermost.
func WithMiddleware(mw func(http.RoundTripper) http.RoundTripper) Option {
	return optionFunc(func(c *config) error {
		if mw == nil {
			return errors.New("pigeon: WithMiddleware: nil middleware")
		}
		c.middleware = append(c.middleware, mw)
		return nil
	})
}

// WithRefreshTimeout bounds one token refresh, independent of any caller's
// context. Zero value: 30s.
func WithRefreshTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("pigeon: WithRefreshTimeout: %v is not positive", d)
		}
		c.refreshTimeout = d
		return nil
	})
}

// WithRefreshAhead sets the window before a known expiry in which one
// background refresh starts while requests keep using the valid token.
// Inside the hard window, the last 10 s (at most half the refresh-ahead
// window), requests wait for that refresh instead. Zero value: 60s. Both
// windows are never more than half the token's lifetime, so a new token is
// not refreshed again at once.
func WithRefreshAhead(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("pigeon: WithRefreshAhead: %v is not positive", d)
		}
		c.refreshAhead = d
		return nil
	})
}

// WithClock injects the clock every part of the client reads and waits
// on: token expiry, the refresh-ahead and hard windows and the refresh
// back-off; WithRetry's waits and Retry-After dates; the socket's
// reconnect back-off, pings, ack timeouts and linger. A fake clock
// (transport/ws/wstest) makes all of them move only when it is moved;
// clock.NowFunc shifts the time read but waits in real time. Zero value:
// clock.Real().
func WithClock(cl clock.Clock) Option {
	return optionFunc(func(c *config) error {
		if cl == nil {
			return errors.New("pigeon: WithClock: nil clock")
		}
		c.setClock(cl)
		return nil
	})
}

func (c *config) setClock(cl clock.Clock) {
	c.clock, c.now, c.socket.clock = cl, cl.Now, cl
}

// WithInsecureHTTP allows sending bearer tokens over plain http:// to hosts
// other than loopback. Zero value: refused.
func WithInsecureHTTP() Option {
	return optionFunc(func(c *config) error { c.allowInsecure = true; return nil })
}

// WithAuthHosts adds hosts ("host" or "host:port") that may receive the
// bearer token besides the base URL's host. Zero value: with a base URL,
// only its host; without one, the host each request starts at.
func WithAuthHosts(hosts ...string) Option {
	return optionFunc(func(c *config) error { c.authHosts = append(c.authHosts, hosts...); return nil })
}

// WithMaxResponseBytes bounds a response body read by the facade's verbs.
// Zero value: 32 MiB.
func WithMaxResponseBytes(n int64) Option {
	return optionFunc(func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("pigeon: WithMaxResponseBytes: %d is not positive", n)
		}
		c.maxBody = n
		return nil
	})
}

// RequestOption configures one request.
type RequestOption interface{ applyRequest(*http.Request) }

type requestOptionFunc func(*http.Request)

func (f requestOptionFunc) applyRequest(r *http.Request) { f(r) }

// WithHeader sets a header on one request.
func WithHeader(k, v string) RequestOption {
	return requestOptionFunc(func(r *http.Request) { r.Header.Set(k, v) })
}

// WithQuery adds query parameters to one request.
func WithQuery(q url.Values) RequestOption {
	return requestOptionFunc(func(r *http.Request) {
		cur := r.URL.Query()
		for k, vs := range q {
			for _, v := range vs {
				cur.Add(k, v)
			}
		}
		r.URL.RawQuery = cur.Encode()
	})
}

// RetryPolicy bounds how often and how patiently a request is resent (see
// WithRetry): MaxAttempts counts the first send (zero value 3), MinDelay
// is the first back-off's ceiling (zero value 100ms), MaxDelay caps every
// wait, Retry-After included (zero value 10s, or MinDelay when larger).
type RetryPolicy = transport.RetryPolicy

// WithRetry resends requests that failed for a passing reason: an answer
// 429, 502, 503 or 504, or a transport error before any answer. Only
// requests safe to send twice are resent (GET, HEAD, OPTIONS, PUT, DELETE,
// or any request with an Idempotency-Key header) and only when the body
// can be read again (always true for the verbs' bodies; through
// HTTPClient, a body with GetBody). Waits use full jitter, or the server's
// Retry-After capped by MaxDelay; the caller's context (and WithTimeout)
// bounds them all. Each attempt carries the then-current token and gets
// its own 401 → refresh → replay, which is not counted as an attempt; the
// refresh call itself is never retried here. When the attempts run out,
// the last answer is returned (a *StatusError for the verbs). Applies to
// the verbs and to HTTPClient. Zero value (option absent): no retries.
func WithRetry(p RetryPolicy) Option {
	return optionFunc(func(c *config) error {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("pigeon: WithRetry: %w", err)
		}
		c.retry = &p
		return nil
	})
}

// WithTimeout gives one call of a verb a budget d for everything it does:
// waiting for a token or a refresh, every attempt and back-off of
// WithRetry, and reading the answer's body. When it runs out the call
// fails with an error that matches context.DeadlineExceeded and names the
// budget. A d that is not positive fails the call before anything is sent.
// The caller's ctx still applies; the earlier deadline wins.
func WithTimeout(d time.Duration) RequestOption { return timeoutOption(d) }

type timeoutOption time.Duration

func (timeoutOption) applyRequest(*http.Request) {}

// WithTracerProvider makes the client trace with tp: a client span for
// each request of the verbs and of HTTPClient (HTTP client semantic
// conventions; its retries and its 401 replay are events on it), a span
// for each refresh flight (the refresh request is its child) and one for
// each socket connect. No token, refresh token, key, query string or
// error message goes into any attribute. Zero value (option absent): no
// tracing, and no cost on the request path. docs/observability.md lists
// the spans and their tests.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) error {
		if tp == nil {
			return errors.New("pigeon: WithTracerProvider: nil TracerProvider")
		}
		c.setTelemetry(tp, c.meterProvider)
		return nil
	})
}

// WithMeterProvider makes the client record its pigeon.* metrics with mp:
// requests by status class, 401 replays, retries, refresh flights by
// outcome, the time requests wait for a refresh (a histogram, seconds),
// socket reconnects and dropped socket events (docs/observability.md).
// Zero value (option absent): no metrics, and no cost on the request path.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) error {
		if mp == nil {
			return errors.New("pigeon: WithMeterProvider: nil MeterProvider")
		}
		c.setTelemetry(c.tracerProvider, mp)
		return nil
	})
}

// setTelemetry (re)builds the instruments of tp and mp, at least one of
// them set, for the HTTP chain, the refresh coordinator and the sockets.
func (c *config) setTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) {
	c.tracerProvider, c.meterProvider = tp, mp
	c.obs = obs.New(tp, mp)
	c.socket.observer = c.obs
}
