package ws

import "github.com/apppigeon/pigeon/clock"

// Clock is the time source of pigeon's socket code: pigeon's one Clock
// type (package clock), injectable for tests (see package wstest).
type Clock = clock.Clock

// Timer is a pending AfterFunc call.
type Timer = clock.Timer

// RealClock returns the Clock of package time.
func RealClock() Clock { return clock.Real() }
