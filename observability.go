package pigeon

import "github.com/apppigeon/pigeon/actors"

// flightObserver is the refresh coordinator's observer of c's telemetry,
// nil when neither WithTracerProvider nor WithMeterProvider is set.
func flightObserver(c *config) actors.FlightObserver {
	if c.obs == nil {
		return nil
	}
	return c.obs
}
