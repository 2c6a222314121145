package pigeon_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/apppigeon/pigeon"
)

// telemetry is a real OpenTelemetry SDK pair: an in-memory span recorder
// and a manual metric reader.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tl := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tl.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tl.spans))
	tl.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tl.reader))
	t.Cleanup(func() {
		_ = tl.tp.Shutdown(context.Background())
		_ = tl.mp.Shutdown(context.Background())
	})
	return tl
}

func (tl *telemetry) options() []pigeon.Option {
	return []pigeon.Option{pigeon.WithTracerProvider(tl.tp), pigeon.WithMeterProvider(tl.mp)}
}

// ended returns the ended spans named name.
func (tl *telemetry) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tl.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func (tl *telemetry) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tl.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// points calls f with every data point of metric name whose attributes
// include every one of attrs.
func (tl *telemetry) points(t *testing.T, name string, attrs []attribute.KeyValue, f func(p any)) {
	t.Helper()
	for _, sm := range tl.collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				matching(d.DataPoints, func(p metricdata.DataPoint[int64]) attribute.Set { return p.Attributes }, attrs, f)
			case metricdata.Histogram[float64]:
				matching(d.DataPoints, func(p metricdata.HistogramDataPoint[float64]) attribute.Set { return p.Attributes }, attrs, f)
			default:
				t.Fatalf("%s is a %T", name, m.Data)
			}
		}
	}
}

// matching calls f with each of pts whose attributes include attrs.
func matching[P any](pts []P, set func(P) attribute.Set, attrs []attribute.KeyValue, f func(p any)) {
	for _, p := range pts {
		if hasAll(set(p), attrs) {
			f(p)
		}
	}
}

// sum returns the total of counter name over the points whose attributes
// include every one of attrs.
func (tl *telemetry) sum(t *testing.T, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	return tl.total(t, name, attrs, func(p any) int64 { dp, _ := p.(metricdata.DataPoint[int64]); return dp.Value })
}

// histCount returns how many values histogram name holds over the points
// whose attributes include every one of attrs.
func (tl *telemetry) histCount(t *testing.T, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	return tl.total(t, name, attrs, func(p any) int64 {
		hp, _ := p.(metricdata.HistogramDataPoint[float64])
		return int64(hp.Count)
	})
}

func (tl *telemetry) total(t *testing.T, name string, attrs []attribute.KeyValue, value func(p any) int64) int64 {
	t.Helper()
	var n int64
	tl.points(t, name, attrs, func(p any) { n += value(p) })
	return n
}

// wantSum fails t unless counter name, over the points with attrs, is want.
func (tl *telemetry) wantSum(t *testing.T, want int64, name string, attrs ...attribute.KeyValue) {
	t.Helper()
	if got := tl.sum(t, name, attrs...); got != want {
		t.Errorf("%s%v = %d, want %d", name, attrs, got, want)
	}
}

func hasAll(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, a := range attrs {
		if v, ok := set.Value(a.Key); !ok || v != a.Value {
			return false
		}
	}
	return true
}

func attrOf(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func eventCount(s sdktrace.ReadOnlySpan, name string) int {
	n := 0
	for _, e := range s.Events() {
		if e.Name == name {
			n++
		}
	}
	return n
}

func TestObservability_RequestSpanFollowsHTTPClientConventions(t *testing.T) {
	tl := newTelemetry(t)
	e := newEnv(t, envConfig{pigeon: tl.options()})
	e.login("otel@example.com")
	if _, err := e.p.Get(ctxT(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	spans := tl.ended(http.MethodGet)
	if len(spans) != 1 {
		t.Fatalf("%d GET spans, want 1", len(spans))
	}
	s := spans[0]
	u, _ := url.Parse(e.srv.URL)
	want := map[attribute.Key]attribute.Value{
		"http.request.method":       attribute.StringValue("GET"),
		"http.response.status_code": attribute.IntValue(200),
		"server.address":            attribute.StringValue(u.Hostname()),
		"url.full":                  attribute.StringValue(e.srv.URL + "/echo"),
	}
	for k, v := range want {
		if got, ok := attrOf(s, k); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got.Emit(), ok, v.Emit())
		}
	}
	if s.SpanKind() != trace.SpanKindClient {
		t.Errorf("span kind %v, want client", s.SpanKind())
	}
	tl.wantSum(t, 1, "pigeon.http.client.requests", attribute.String("pigeon.http.status_class", "2xx"))
}

func TestObservability_RetryIsAnEventAndCounted(t *testing.T) {
	tl := newTelemetry(t)
	f := newFlaky("/echo", 1, http.StatusServiceUnavailable)
	e := newEnv(t, envConfig{wrap: f.wrap, pigeon: append(tl.options(), pigeon.WithRetry(fastRetry))})
	e.login("retry@example.com")
	if _, err := e.p.Get(ctxT(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	spans := tl.ended(http.MethodGet)
	if len(spans) != 1 || eventCount(spans[0], "pigeon.retry") != 1 {
		t.Fatalf("%d GET spans (want 1), retry events %v", len(spans), spans)
	}
	if v, _ := attrOf(spans[0], "http.request.resend_count"); v.AsInt64() != 1 {
		t.Errorf("http.request.resend_count = %v, want 1", v.Emit())
	}
	tl.wantSum(t, 1, "pigeon.http.client.retries")
	tl.wantSum(t, 0, "pigeon.http.client.replays")
}

func TestObservability_ReplayRefreshFlightAndWait(t *testing.T) {
	tl := newTelemetry(t)
	e := newEnv(t, envConfig{pigeon: tl.options()})
	tok := e.login("replay@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	if _, err := e.p.Get(ctxT(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	var gets []sdktrace.ReadOnlySpan
	for _, s := range tl.ended(http.MethodGet) {
		if v, _ := attrOf(s, "url.full"); strings.HasSuffix(v.AsString(), "/echo") {
			gets = append(gets, s)
		}
	}
	if len(gets) != 1 || eventCount(gets[0], "pigeon.replay_401") != 1 {
		t.Fatalf("%d GET /echo spans (want 1 with one replay event)", len(gets))
	}
	flights := tl.ended("pigeon.refresh")
	if len(flights) != 1 {
		t.Fatalf("%d refresh flight spans, want 1", len(flights))
	}
	if v, _ := attrOf(flights[0], "pigeon.refresh.outcome"); v.AsString() != "refreshed" {
		t.Errorf("flight outcome %q, want refreshed", v.AsString())
	}
	// The refresh call is a child of its flight.
	var child bool
	for _, s := range tl.ended(http.MethodPost) {
		child = child || s.Parent().SpanID() == flights[0].SpanContext().SpanID()
	}
	if !child {
		t.Error("no POST span is a child of the refresh flight")
	}
	tl.wantSum(t, 1, "pigeon.http.client.replays")
	tl.wantSum(t, 1, "pigeon.refresh.flights", attribute.String("pigeon.refresh.outcome", "refreshed"))
	if got := tl.sum(t, "pigeon.http.client.requests", attribute.String("pigeon.http.status_class", "2xx")); got < 2 {
		t.Errorf("requests{2xx} = %d, want the replayed GET and the refresh POST", got)
	}
	if got := tl.histCount(t, "pigeon.refresh.wait", attribute.String("pigeon.refresh.wait_kind", "unauthorized")); got != 1 {
		t.Errorf("refresh waits after a 401 = %d, want 1", got)
	}
}

func TestObservability_KnownExpiryWaitIsRecorded(t *testing.T) {
	tl := newTelemetry(t)
	e := newEnv(t, envConfig{pigeon: tl.options()})
	tok := e.login("expiry@example.com")
	// Inside the hard window: the request waits for the refresh.
	e.clock.Advance(tok.ExpiresAt.Sub(e.clock.Now()) - 5*time.Second)
	if _, err := e.p.Get(ctxT(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	if got := tl.histCount(t, "pigeon.refresh.wait", attribute.String("pigeon.refresh.wait_kind", "token")); got != 1 {
		t.Errorf("token waits = %d, want 1", got)
	}
	tl.wantSum(t, 0, "pigeon.http.client.replays")
}

func TestObservability_TransportErrorCountedAsError(t *testing.T) {
	tl := newTelemetry(t)
	e := newEnv(t, envConfig{pigeon: tl.options()})
	e.login("down@example.com")
	e.srv.Close()
	if _, err := e.p.Get(ctxT(t), "/echo"); err == nil {
		t.Fatal("GET to a closed server succeeded")
	}
	tl.wantSum(t, 1, "pigeon.http.client.requests", attribute.String("pigeon.http.status_class", "error"))
	spans := tl.ended(http.MethodGet)
	if len(spans) != 1 {
		t.Fatalf("%d GET spans, want 1", len(spans))
	}
	if v, ok := attrOf(spans[0], "error.type"); !ok || v.AsString() == "" {
		t.Errorf("error.type missing on a failed request")
	}
}

// TestObservability_NoSecretInAnyAttribute runs a request with a query
// string, a 401 replay with its refresh (rotating the refresh token), a
// request that fails with an error naming the URL and query, on an
// encrypted store, and checks that no span name, attribute, event,
// status description or metric attribute holds a token, refresh token,
// the key or the query.
func TestObservability_NoSecretInAnyAttribute(t *testing.T) {
	tl := newTelemetry(t)
	key := []byte("k3y-0123456789abcdef0123456789ab")
	e := newEnv(t, envConfig{pigeon: tl.options(), storeDir: t.TempDir(), key: key})
	tok := e.login("secret@example.com")
	e.be.ExpireAccessToken(tok.AccessToken)
	const q = "q-secret-value"
	if _, err := e.p.Get(ctxT(t), "/echo", pigeon.WithQuery(url.Values{"api_key": {q}})); err != nil {
		t.Fatal(err)
	}
	cur, err := e.p.CurrentAuth(ctxT(t))
	if err != nil || cur.AccessToken == "" {
		t.Fatal(cur.UID, err)
	}
	e.srv.Close()
	if _, err := e.p.Get(ctxT(t), "/echo?sig="+q); err == nil || !strings.Contains(err.Error(), q) {
		t.Fatalf("want the failure's message to hold the query (so the check below means something), got %v", err)
	}
	secrets := []string{tok.AccessToken, tok.RefreshToken, string(cur.AccessToken), string(cur.RefreshToken), string(key), q, "api_key", "sig="}
	var texts []string
	for _, s := range tl.spans.Ended() {
		texts = append(texts, s.Name(), s.Status().Description)
		for _, a := range s.Attributes() {
			texts = append(texts, string(a.Key)+"="+a.Value.Emit())
		}
		for _, ev := range s.Events() {
			texts = append(texts, ev.Name)
			for _, a := range ev.Attributes {
				texts = append(texts, string(a.Key)+"="+a.Value.Emit())
			}
		}
	}
	for _, sm := range tl.collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			texts = append(texts, m.Name)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					texts = append(texts, p.Attributes.Encoded(attribute.DefaultEncoder()))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					texts = append(texts, p.Attributes.Encoded(attribute.DefaultEncoder()))
				}
			}
		}
	}
	if len(texts) < 10 {
		t.Fatalf("only %d texts recorded: the check would be empty", len(texts))
	}
	for _, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("telemetry text %q holds secret %q", text, s)
			}
		}
	}
}

// TestObservability_SocketConnectReconnectAndDrops: each dial is a
// pigeon.socket.connect span, a server-side close schedules one counted
// reconnect, and events a full listener queue drops are counted.
func TestObservability_SocketConnectReconnectAndDrops(t *testing.T) {
	tl := newTelemetry(t)
	e := newEnv(t, envConfig{noClock: true, pigeon: append(tl.options(),
		pigeon.WithListenerQueue(1, pigeon.DropNewest),
		pigeon.WithReconnect(pigeon.ReconnectPolicy{MinDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))})
	e.login("sock@example.com")
	ctx := ctxT(t)
	states, err := e.p.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub := joinChat(t, ctx, e, e.p)
	for i := range 3 {
		if _, err := e.p.EmitWithAck(ctx, "message", map[string]string{"text": "m" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	// The server queues each sender's own event before its ack: all three
	// reached the listener, whose queue holds one.
	tl.wantSum(t, 2, "pigeon.socket.dropped_events")
	if len(sub.C) != 1 {
		t.Errorf("listener holds %d events, want 1", len(sub.C))
	}
	e.be.CloseAllSockets(1012, "restart")
	sawReconnecting := false
	for {
		st := recv(t, ctx, states)
		sawReconnecting = sawReconnecting || st.State == pigeon.SocketReconnecting
		if sawReconnecting && st.State == pigeon.SocketConnected {
			break
		}
	}
	tl.wantSum(t, 1, "pigeon.socket.reconnects")
	if got := len(tl.ended("pigeon.socket.connect")); got != 2 {
		t.Errorf("%d connect spans, want 2 (first dial and the reconnect)", got)
	}
}
