package obs

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// StartFlight starts the span of one refresh flight (a root span: a
// flight serves every request waiting for it) and returns the context to
// run it with, whose HTTP requests are children of the span. end closes
// the span and counts the flight by outcome; called says whether the
// token endpoint was called. A nil *Obs returns ctx and an end that does
// nothing.
func (o *Obs) StartFlight(ctx context.Context) (_ context.Context, end func(outcome string, called bool)) {
	if o == nil {
		return ctx, func(string, bool) {}
	}
	o.lastFlight.Store(int64(o.since()))
	o.active.Add(1)
	o.flights.Add(1)
	ctx, span := o.tracer.Start(ctx, SpanRefreshFlight, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(outcome string, called bool) {
		o.active.Add(-1)
		attrs := attribute.NewSet(AttrRefreshOutcome.String(outcome), AttrRefreshCalled.Bool(called))
		o.refreshes.Add(ctx, 1, metric.WithAttributeSet(attrs))
		span.SetAttributes(attrs.ToSlice()...)
		if outcome != OutcomeRefreshed && outcome != OutcomeNewer {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
}

// StartConnect starts the span of one socket connect (dial and
// handshake); end closes it with the dial's error, of which only the type
// is kept. A nil *Obs returns ctx and an end that does nothing.
func (o *Obs) StartConnect(ctx context.Context) (_ context.Context, end func(err error)) {
	if o == nil {
		return ctx, func(error) {}
	}
	ctx, span := o.tracer.Start(ctx, SpanSocketConnect, trace.WithSpanKind(trace.SpanKindClient))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(semconv.ErrorType(err))
			span.SetStatus(codes.Error, "connect failed")
		}
		span.End()
	}
}

// Reconnect counts one scheduled socket reconnect.
func (o *Obs) Reconnect() {
	if o != nil {
		o.reconnects.Add(context.Background(), 1)
	}
}

// Dropped counts n socket events dropped by a full listener queue.
func (o *Obs) Dropped(n uint64) {
	if o != nil && n > 0 {
		o.dropped.Add(context.Background(), int64(n))
	}
}
