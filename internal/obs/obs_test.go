package obs

import (
	"context"
	"testing"
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
