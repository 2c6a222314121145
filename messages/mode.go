package messages

import "github.com/asynkron/protoactor-go/actor"

// Mode is which client a Switch routes to.
type Mode int

const (
	// ModeGhost routes to the anonymous client (the zero value).
	ModeGhost Mode = iota
	// ModeAuthorized routes to the authorized client.
	ModeAuthorized
)

func (m Mode) String() string {
	switch m {
	case ModeGhost:
		return "ghost"
	case ModeAuthorized:
		return "authorized"
	}
	return "Mode(?)"
}

// ---- ModeSwitch protocol. ----

// UseMode makes Mode active. Reply: *ModeState (the mode now active).
type UseMode struct{ Mode Mode }

// GetMode asks for the active mode. Reply: *ModeState.
type GetMode struct{}

// ModeState answers UseMode and GetMode.
type ModeState struct{ Mode Mode }

// SubscribeMode subscribes to mode changes. With PID set the switch sends
// *ModeChanged to that actor; otherwise the reply carries a channel of
// Buffer entries (zero value means 16) that drops the oldest entry when
// full, so a slow reader ends on the newest mode and never blocks the
// switch. The active mode is delivered first. Reply: *ModeSubscription.
type SubscribeMode struct {
	PID    *actor.PID
	Buffer int
}

// ModeSubscription answers SubscribeMode; C is nil for PID subscriptions and
// closed by UnsubscribeMode or when the switch stops.
type ModeSubscription struct {
	ID uint64
	C  <-chan Mode
}

// UnsubscribeMode ends a subscription. Reply: *Unsubscribed.
type UnsubscribeMode struct{ ID uint64 }

// ModeChanged is sent to PID subscribers on every change (and once on
// subscribe). Prev is the mode before (equal to Mode on subscribe).
type ModeChanged struct{ Prev, Mode Mode }

func (*ModeState) IgnoreDeadLetterLogging()        {}
func (*ModeSubscription) IgnoreDeadLetterLogging() {}
func (*ModeChanged) IgnoreDeadLetterLogging()      {}
func (*UnsubscribeMode) IgnoreDeadLetterLogging()  {}
