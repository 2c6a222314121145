package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/apppigeon/pigeon"
)

// flakyHeader marks the requests the tour's server answers 503 (twice)
// before it lets one through, to show WithRetry at work.
const flakyHeader = "X-Tour-Flaky"

// flaky wraps the backend: a request carrying flakyHeader gets 503 with
// Retry-After: 0 while fails is above zero.
type flaky struct {
	next  http.Handler
	fails atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(flakyHeader) != "" && f.fails.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy, try again", http.StatusServiceUnavailable)
		return
	}
	f.next.ServeHTTP(w, r)
}

// serviceOptions are the options a long-running service adds: retries
// and an OpenTelemetry meter provider (the SDK's, read by hand here).
func (t *tour) serviceOptions() []pigeon.Option {
	t.metrics = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(t.metrics))
	t.closers = append(t.closers, func() { _ = mp.Shutdown(context.Background()) })
	return []pigeon.Option{
		pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 3, MinDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}),
		pigeon.WithMeterProvider(mp),
	}
}

// service shows what a service built on pigeon watches and controls: a
// forced refresh seen on the refresh stream, the socket's state, a
// request retried past two 503s, and pigeon's metrics.
func (t *tour) service(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	refreshes, err := t.p.SubscribeRefreshes(sctx)
	if err != nil {
		return err
	}
	before := t.be.Stats().RefreshCalls
	if err := t.p.Refresh(ctx); err != nil {
		return err
	}
	select {
	case ev := <-refreshes:
		t.say("Refresh(ctx) forced one refresh: refresh stream says %s for %s (server count +%d)",
			ev.Outcome, ev.UID, t.be.Stats().RefreshCalls-before)
		if ev.Outcome != pigeon.RefreshSucceeded {
			return fmt.Errorf("forced refresh: %v", ev.Err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}

	states, err := t.p.SubscribeSocketState(sctx)
	if err != nil {
		return err
	}
	select {
	case st := <-states:
		t.say("socket state stream starts with the current state: %s", st.State)
		if st.State != pigeon.SocketConnected {
			return fmt.Errorf("socket %s, want connected", st.State)
		}
	case <-ctx.Done():
		return ctx.Err()
	}

	t.flaky.fails.Store(2)
	resp, err := t.p.Get(ctx, "/me", pigeon.WithHeader(flakyHeader, "1"), pigeon.WithTimeout(10*time.Second))
	if err != nil {
		return err
	}
	t.say("GET /me answered 503, 503, then %d: WithRetry retried it (Retry-After honoured)", resp.StatusCode)

	var rm metricdata.ResourceMetrics
	if err := t.metrics.Collect(ctx, &rm); err != nil {
		return err
	}
	requests, retries := sumMetric(rm, "pigeon.http.client.requests"), sumMetric(rm, "pigeon.http.client.retries")
	t.say("OpenTelemetry metrics so far: pigeon.http.client.requests %d, pigeon.http.client.retries %d, pigeon.refresh.flights %d",
		requests, retries, sumMetric(rm, "pigeon.refresh.flights"))
	if retries != 2 {
		return errors.New("the metrics do not show the two retries")
	}
	return nil
}

// sumMetric adds up every data point of the integer sum named name.
func sumMetric(rm metricdata.ResourceMetrics, name string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}
