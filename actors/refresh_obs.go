package actors

import "context"

// FlightObserver watches refresh flights (pigeon's internal/obs.Obs is
// one: a span per flight and the pigeon.refresh.flights counter).
// Implementations must be safe for concurrent use.
type FlightObserver interface {
	// StartFlight is called as a flight starts, off the mailbox; the
	// flight runs with the returned context, and end is called once with
	// its outcome ("refreshed", "newer", "failed", "ended" or "canceled")
	// and whether the refresh function was called.
	StartFlight(ctx context.Context) (context.Context, func(outcome string, called bool))
}

// WithRefreshObserver has every flight reported to o. Zero value (or nil):
// none.
func WithRefreshObserver(o FlightObserver) RefreshOption {
	return refreshOptionFunc(func(c *refreshConfig) { c.observer = o })
}

// observed runs one flight under the observer, if any.
func (c refreshConfig) observed(ctx context.Context, run func(context.Context) *refreshDone) *refreshDone {
	if c.observer == nil {
		return run(ctx)
	}
	fctx, end := c.observer.StartFlight(ctx)
	d := run(fctx)
	end(flightOutcome(ctx, d), d.calls)
	return d
}

func flightOutcome(ctx context.Context, d *refreshDone) string {
	switch {
	case d.kind == doneOK:
		return "refreshed"
	case d.kind == doneNewer:
		return "newer"
	case d.kind == doneEnded:
		return "ended"
	case ctx.Err() != nil:
		return "canceled"
	}
	return "failed"
}
