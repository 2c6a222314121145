// Package obs holds pigeon's OpenTelemetry instruments: the span of each
// HTTP request (with its retries and 401 replays as events), of each
// refresh flight and of each socket connect, and the pigeon.* metrics.
//
// It uses only the OpenTelemetry API. A client built without providers
// has no *Obs at all (New returns nil) and none of its layers: every
// method of a nil *Obs and of a nil *Request is a no-op, so the hot path
// pays nothing when telemetry is off.
//
// # Secrets
//
// No attribute, event or status description carries a token, a refresh
// token, a key, a query string, user info of a URL or an error's message
// (a *url.Error's message names the URL with its query): URLs are reduced
// to scheme, host and path, errors to their Go type (error.type).
package obs

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of pigeon's tracer and meter.
const ScopeName = "github.com/apppigeon/pigeon"

// Metric names.
const (
	MetricRequests        = "pigeon.http.client.requests"
	MetricReplays         = "pigeon.http.client.replays"
	MetricRetries         = "pigeon.http.client.retries"
	MetricRefreshes       = "pigeon.refresh.flights"
	MetricRefreshWait     = "pigeon.refresh.wait"
	MetricReconnects      = "pigeon.socket.reconnects"
	MetricDroppedEvents   = "pigeon.socket.dropped_events"
	AttrStatusClass       = attribute.Key("pigeon.http.status_class")
	AttrRefreshOutcome    = attribute.Key("pigeon.refresh.outcome")
	AttrRefreshCalled     = attribute.Key("pigeon.refresh.called")
	AttrAttempt           = attribute.Key("pigeon.http.attempt")
	AttrWaitKind          = attribute.Key("pigeon.refresh.wait_kind")
	EventRetry            = "pigeon.retry"
	EventReplay           = "pigeon.replay_401"
	SpanRefreshFlight     = "pigeon.refresh"
	SpanSocketConnect     = "pigeon.socket.connect"
	statusClassError      = "error"
	waitKindToken         = "token"
	waitKindUnauthorized  = "unauthorized"
	refreshWaitUnit       = "s"
	refreshWaitDesc       = "Time a request waited for a refresh: for its token, or after a 401 for the replay's token."
	requestsDesc          = "HTTP requests sent through pigeon, by status class (1xx-5xx, or error when no answer came)."
	replaysDesc           = "Requests replayed once with a new token after a 401."
	retriesDesc           = "Requests sent again by WithRetry's layer."
	refreshesDesc         = "Refresh flights, by outcome."
	reconnectsDesc        = "Socket reconnects scheduled after a lost or failed connection."
	droppedEventsDesc     = "Socket events dropped by a full listener queue."
	flightOutcomeRefresh  = "refreshed"
	flightOutcomeNewer    = "newer"
	flightOutcomeFailed   = "failed"
	flightOutcomeEnded    = "ended"
	flightOutcomeCanceled = "canceled"
)

// Flight outcomes (the pigeon.refresh.outcome attribute).
const (
	OutcomeRefreshed = flightOutcomeRefresh  // new tokens saved
	OutcomeNewer     = flightOutcomeNewer    // a newer token was already stored
	OutcomeFailed    = flightOutcomeFailed   // transient failure, backing off
	OutcomeEnded     = flightOutcomeEnded    // the session ended (rejected, logged out)
	OutcomeCanceled  = flightOutcomeCanceled // the client closed during the flight
)

// Obs is one client's tracer and instruments. Safe for concurrent use.
type Obs struct {
	tracer trace.Tracer
	// untraced: the tracer is OpenTelemetry's no-op one, so requests
	// start no span (one would record nothing and cost a context).
	untraced    bool
	requests    metric.Int64Counter
	replays     metric.Int64Counter
	retries     metric.Int64Counter
	refreshes   metric.Int64Counter
	refreshWait metric.Float64Histogram
	reconnects  metric.Int64Counter
	dropped     metric.Int64Counter

	// flights counts the refresh flights started and active those still
	// running, so a token wait can tell whether a refresh ran while it
	// waited.
	flights atomic.Uint64
	active  atomic.Int64
	// lastFlight is when the latest flight started (since epoch).
	lastFlight atomic.Int64
	epoch      time.Time

	classOpts   [6][]metric.AddOption // by status/100; [0] is "error"
	waitToken   []metric.RecordOption
	waitRefused []metric.RecordOption
}

// New returns the instruments of tp and mp (either may be nil: no-op), or
// nil when neither records anything: both nil, or OpenTelemetry's no-op
// providers (whose spans and instruments would record nothing and still
// cost a context and a few allocations per request).
func New(tp trace.TracerProvider, mp metric.MeterProvider) *Obs {
	if noopTracer(tp) && noopMeter(mp) {
		return nil
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter(ScopeName)
	o := &Obs{tracer: tp.Tracer(ScopeName), epoch: time.Now()}
	_, o.untraced = tp.(tracenoop.TracerProvider)
	// The API returns a working no-op instrument beside any error (which
	// only an invalid name causes, and these names are valid).
	o.requests, _ = m.Int64Counter(MetricRequests, metric.WithDescription(requestsDesc), metric.WithUnit("{request}"))
	o.replays, _ = m.Int64Counter(MetricReplays, metric.WithDescription(replaysDesc), metric.WithUnit("{request}"))
	o.retries, _ = m.Int64Counter(MetricRetries, metric.WithDescription(retriesDesc), metric.WithUnit("{request}"))
	o.refreshes, _ = m.Int64Counter(MetricRefreshes, metric.WithDescription(refreshesDesc), metric.WithUnit("{flight}"))
	o.refreshWait, _ = m.Float64Histogram(MetricRefreshWait, metric.WithDescription(refreshWaitDesc), metric.WithUnit(refreshWaitUnit))
	o.reconnects, _ = m.Int64Counter(MetricReconnects, metric.WithDescription(reconnectsDesc), metric.WithUnit("{reconnect}"))
	o.dropped, _ = m.Int64Counter(MetricDroppedEvents, metric.WithDescription(droppedEventsDesc), metric.WithUnit("{event}"))
	for i := range o.classOpts {
		class := statusClassError
		if i > 0 {
			class = strconv.Itoa(i) + "xx"
		}
		o.classOpts[i] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(AttrStatusClass.String(class)))}
	}
	o.waitToken = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(AttrWaitKind.String(waitKindToken)))}
	o.waitRefused = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(AttrWaitKind.String(waitKindUnauthorized)))}
	return o
}

// noopTracer reports whether tp is nil or OpenTelemetry's no-op provider.
func noopTracer(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	return false
}

// noopMeter reports whether mp is nil or OpenTelemetry's no-op provider.
func noopMeter(mp metric.MeterProvider) bool {
	switch mp.(type) {
	case nil, metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return true
	}
	return false
}

type requestKey struct{}

// Request is the telemetry of one request in flight: its span and how
// many attempts WithRetry's layer made. It is also the request's context
// (its parent's, with itself as a value), which saves a context per
// request. Methods of a nil *Request do nothing.
type Request struct {
	context.Context
	obs      *Obs
	span     trace.Span
	attempts atomic.Int32
}

// Value returns r for FromContext's key, else the parent's value.
func (r *Request) Value(key any) any {
	if key == (requestKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// FromContext returns the Request that ctx belongs to, nil when none (no
// telemetry, or a request not sent through a Transport).
func FromContext(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// Transport is the outermost layer of an instrumented client: one client
// span per RoundTrip (per redirect hop) and the request counter.
type Transport struct {
	Base http.RoundTripper
	Obs  *Obs
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	o := t.Obs
	ctx, span := req.Context(), untracedSpan
	if !o.untraced {
		ctx, span = o.tracer.Start(ctx, req.Method, clientSpan...)
	}
	if span.IsRecording() {
		span.SetAttributes(requestAttrs(req)...)
	}
	r := &Request{Context: ctx, obs: o, span: span}
	ctx = r
	resp, err := t.Base.RoundTrip(req.WithContext(ctx))
	class := 0
	if err == nil {
		class = resp.StatusCode / 100
		if class < 1 || class > 5 {
			class = 0
		}
	}
	o.requests.Add(ctx, 1, o.classOpts[class]...)
	if span.IsRecording() {
		if n := r.attempts.Load(); n > 1 {
			span.SetAttributes(semconv.HTTPRequestResendCount(int(n - 1)))
		}
		switch {
		case err != nil:
			// Only the error's type: its message may hold the URL.
			span.SetAttributes(semconv.ErrorType(err))
			span.SetStatus(codes.Error, "request failed")
		default:
			span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
			if resp.StatusCode >= 400 {
				span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
				span.SetStatus(codes.Error, "")
			}
		}
	}
	span.End()
	return resp, err
}

var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// untracedSpan is the span of a request when the tracer is the no-op one.
// (boxed once: a tracenoop.Span converted per request would allocate).
var untracedSpan trace.Span = tracenoop.Span{}

// requestAttrs are the HTTP client attributes of req: method, server
// address and port, and the URL without its query or user info.
func requestAttrs(req *http.Request) []attribute.KeyValue {
	u := req.URL
	host, port := u.Hostname(), u.Port()
	p := 0
	if port != "" {
		p, _ = strconv.Atoi(port)
	} else if u.Scheme == "https" {
		p = 443
	} else if u.Scheme == "http" {
		p = 80
	}
	clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(req.Method),
		semconv.ServerAddress(host),
		semconv.ServerPort(p),
		semconv.URLFull(clean.String()),
	}
}

// Attempts sits between WithRetry's layer and the auth Transport: it
// counts each attempt of the request it belongs to, and every attempt
// after the first is a retry (an event on the request's span and the
// retries counter). A 401 replay happens below it and is not an attempt.
type Attempts struct {
	Base http.RoundTripper
}

var _ http.RoundTripper = Attempts{}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (a Attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	if r := FromContext(req.Context()); r != nil {
		if n := r.attempts.Add(1); n > 1 {
			r.obs.retries.Add(req.Context(), 1)
			r.span.AddEvent(EventRetry, trace.WithAttributes(AttrAttempt.Int(int(n))))
		}
	}
	return a.Base.RoundTrip(req)
}

// Replayed records that the request is replayed with a new token after a
// 401.
func (r *Request) Replayed(ctx context.Context) {
	if r == nil {
		return
	}
	r.obs.replays.Add(ctx, 1)
	r.span.AddEvent(EventReplay)
}

// Wait is a token wait being timed; the zero Wait records nothing.
type Wait struct {
	r       *Request
	start   time.Duration // since the Obs's epoch; set only when timed
	timed   bool
	flights uint64
}

// StartWait starts watching a call for the request's token, which waits
// only when a refresh runs. It reads the clock only when a flight is
// running already; otherwise a wait can only be for a flight that starts
// meanwhile, and is timed from that flight's start (Token), so the
// request path reads no clock when there is no refresh about.
func (r *Request) StartWait() Wait {
	if r == nil {
		return Wait{}
	}
	w := Wait{r: r, flights: r.obs.flights.Load()}
	if r.obs.active.Load() > 0 {
		w.start, w.timed = r.obs.since(), true
	}
	return w
}

// StartRefusalWait starts timing the wait after a 401 for the replay's
// token.
func (r *Request) StartRefusalWait() Wait {
	if r == nil {
		return Wait{}
	}
	return Wait{r: r, start: r.obs.since(), timed: true}
}

// Token ends a wait for the request's token. It is recorded only when a
// refresh flight of the client was running as it began or started before
// it ended: a token served from the snapshot, with no refresh about, is
// no refresh wait. (A flight of another account of the same client
// counts too: the client's flights are not told apart.)
func (w Wait) Token(ctx context.Context) {
	if w.r == nil || !w.timed && w.r.obs.flights.Load() == w.flights {
		return
	}
	o := w.r.obs
	begin := w.start
	if !w.timed {
		begin = time.Duration(o.lastFlight.Load())
	}
	o.refreshWait.Record(ctx, max(o.since()-begin, 0).Seconds(), o.waitToken...)
}

// Unauthorized ends the wait after a 401 for the replay's token (from
// StartRefusalWait).
func (w Wait) Unauthorized(ctx context.Context) {
	if w.r == nil {
		return
	}
	o := w.r.obs
	o.refreshWait.Record(ctx, max(o.since()-w.start, 0).Seconds(), o.waitRefused...)
}

// since is the monotonic time since the Obs was made.
func (o *Obs) since() time.Duration { return time.Since(o.epoch) }
