package pigeon

import (
	"time"

	"github.com/apppigeon/pigeon/actors"
)

// A dead letter starts a protoactor throttle goroutine that lives one
// throttle interval (1 s by default); the clients of this package's tests
// use 1 ms, so a dead letter near the end of the run leaves nothing for
// goleak to find.
func init() {
	systemOptions = []actors.SystemOption{actors.WithDeadLetterThrottle(time.Millisecond)}
}
