package pigeon

import (
	"context"
	"net/http"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/apppigeon/pigeon/internal/obs"
)

// TestObservability_AbsentAddsNothing: without providers the client's
// chain is exactly what it was (no layer, no per-request work); with
// OpenTelemetry's no-op providers neither (they would record nothing);
// with a recording one, the telemetry layer is outermost and WithRetry's attempts are
// counted beneath the retry layer; nil providers are errors.
func TestObservability_AbsentAddsNothing(t *testing.T) {
	rt := http.RoundTripper(answerNothing{})
	off, err := newConfig([]Option{WithRetry(RetryPolicy{})})
	if err != nil {
		t.Fatal(err)
	}
	if c := newClient(off, rt); c.Transport != rt {
		t.Fatalf("without providers the client's Transport is %T, want the chain itself", c.Transport)
	}
	if off.obs != nil || off.socket.observer != nil || flightObserver(off) != nil {
		t.Fatal("without providers there is telemetry state")
	}
	noop, err := newConfig([]Option{WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()), WithRetry(RetryPolicy{})})
	if err != nil {
		t.Fatal(err)
	}
	if c := newClient(noop, rt); c.Transport != rt || noop.obs != nil {
		t.Fatalf("with OpenTelemetry's no-op providers the client's Transport is %T, want the chain itself", c.Transport)
	}
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	on, err := newConfig([]Option{WithTracerProvider(tp), WithMeterProvider(metricnoop.NewMeterProvider()), WithRetry(RetryPolicy{})})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := newClient(on, rt).Transport.(*obs.Transport); !ok {
		t.Fatal("with providers the telemetry layer is not outermost")
	}
	if _, err := newConfig([]Option{WithTracerProvider(nil)}); err == nil {
		t.Error("WithTracerProvider(nil) accepted")
	}
	if _, err := newConfig([]Option{WithMeterProvider(nil)}); err == nil {
		t.Error("WithMeterProvider(nil) accepted")
	}
}

type answerNothing struct{}

func (answerNothing) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, http.ErrNotSupported
}
