package obs

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// TestNilIsNoOp: without providers there is no *Obs, and every hook the
// request path, the refresh coordinator and the socket call on a nil one
// (or on a request without telemetry) does nothing and allocates nothing.
func TestNilIsNoOp(t *testing.T) {
	if New(nil, nil) != nil {
		t.Fatal("New(nil, nil) is not nil")
	}
	ctx := context.Background()
	var o *Obs
	allocs := testing.AllocsPerRun(100, func() {
		r := FromContext(ctx)
		w := r.StartWait()
		w.Token(ctx)
		rw := r.StartRefusalWait()
		rw.Unauthorized(ctx)
		r.Replayed(ctx)
		o.Reconnect()
		o.Dropped(3)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request without telemetry, want 0", allocs)
	}
	fctx, end := o.StartFlight(ctx)
	end(OutcomeRefreshed, true)
	cctx, endC := o.StartConnect(ctx)
	endC(nil)
	if fctx != ctx || cctx != ctx {
		t.Fatal("a nil *Obs changed the context")
	}
}

// TestNoopTracerStartsNoSpan: with OpenTelemetry's no-op TracerProvider
// the request layer starts no span (the caller's span, from another
// provider, is what the layers below see), and the request still carries
// its telemetry for the meter's counters.
// OpenTelemetry's no-op providers record nothing, so a client given them
// (or none) has no telemetry layer at all; one recording provider is
// enough for one.
func TestNoopProvidersAddNoLayer(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tnoop, mnoop := tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()
	for _, tc := range []struct {
		name  string
		tp    trace.TracerProvider
		mp    metric.MeterProvider
		layer bool
	}{
		{"none", nil, nil, false},
		{"no-op both", tnoop, mnoop, false},
		{"no-op tracer only", tnoop, nil, false},
		{"no-op both, as pointers", &tnoop, &mnoop, false},
		{"recording meter", tnoop, mp, true},
		{"recording tracer", tp, mnoop, true},
	} {
		if got := New(tc.tp, tc.mp) != nil; got != tc.layer {
			t.Errorf("%s: layer %v, want %v", tc.name, got, tc.layer)
		}
	}
}

func TestNoopTracerStartsNoSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = sdk.Shutdown(context.Background()) }()
	ctx, caller := sdk.Tracer("caller").Start(context.Background(), "caller")
	defer caller.End()
	for _, tc := range []struct {
		name     string
		tp       trace.TracerProvider
		wantSame bool
	}{
		{"no-op tracer", tracenoop.NewTracerProvider(), true},
		{"recording tracer", sdk, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var same, carried bool
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			defer func() { _ = mp.Shutdown(context.Background()) }()
			tr := &Transport{Obs: New(tc.tp, mp), Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				same = trace.SpanFromContext(r.Context()) == caller
				carried = FromContext(r.Context()) != nil
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/x", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if same != tc.wantSame || !carried {
				t.Fatalf("below the layer: caller's span %v (want %v), request telemetry %v", same, tc.wantSame, carried)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
