package messages

// Protocol of the guard actor (guardactor.NewProps). Every message is sent
// as a pointer and never mutated after sending. Requests answered with a
// reply are meant for actors.Ask; an error reply is returned by Ask as its
// error.

// Navigate asks the guard actor to navigate to Location (an absolute path
// with optional percent-encoded query). The actor evaluates it with the
// guards' last known states, follows redirects until the location settles,
// and makes the result its current location.
//
// Reply: *Navigated, or an error: an invalid location
// (guardactor.ErrInvalidLocation), a guard whose state is unknown or failed
// (guardactor.ErrGuardState; a failed guard never counts as passing), a
// redirect loop (guardactor.ErrRedirectLoop). While the actor's own guard
// checks are running, the request waits for them (bounded by the caller's
// context).
type Navigate struct {
	Location string
	// NeglectContinue: a blocking guard does not store the destination as
	// continue for this navigation (e.g. a logout). Zero value: false.
	NeglectContinue bool
}

// Navigated is the reply to Navigate.
type Navigated struct {
	// Requested is Navigate.Location.
	Requested string
	// Location is where navigation settled: the actor's current location.
	Location string
	// NotFound is true when Location matches no route.
	NotFound bool
	// Hops are the redirects followed, in order (empty when none).
	Hops []RedirectHop
}

// RedirectHop is one redirect of a navigation.
type RedirectHop struct {
	To    string // the redirect target
	Rule  string // the algorithm step that produced it (guardactor.Rule.String)
	Guard string // the deciding guard, "" if none
}

// GuardChanged reports a guard's new state (e.g. from an auth-status stream,
// see guardactor.Follow). The actor re-evaluates its current location and,
// if it must move, publishes a *Redirected to every subscriber.
//
// Reply: *GuardChangedAck when sent with a sender (Request / actors.Ask);
// an error when Guard is not registered; nothing when sent with Send.
type GuardChanged struct {
	Guard  string
	Passes bool
	// Err, when non-nil, means the guard could not be checked: the guard has
	// no usable state until the next successful report (navigations that
	// need it fail with guardactor.ErrGuardState); it never counts as
	// passing.
	Err error
}

// GuardChangedAck is the reply to GuardChanged.
type GuardChangedAck struct {
	// Location is the current location after re-evaluation ("" before the
	// first Navigate).
	Location string
	// Redirected is true when the change moved the current location.
	Redirected bool
}

// SubscribeRedirects asks for the redirects the actor decides on its own
// (after a guard change). Reply: *RedirectSubscription.
type SubscribeRedirects struct {
	// Buffer is the subscriber's queue capacity. Zero value means 16;
	// values above 1024 are clamped to 1024.
	Buffer int
}

// RedirectSubscription is the reply to SubscribeRedirects.
//
// Overflow policy: when C is full, the actor drops the OLDEST queued event
// to make room (the newest redirect is the one that matters) and counts it
// in the next event's Dropped; a slow subscriber never blocks the actor. C
// is closed after UnsubscribeRedirects, when the actor stops and when it
// is restarted after a failure; Err then says which.
type RedirectSubscription struct {
	ID uint64
	C  <-chan *Redirected
	// Err returns why C was closed: ErrClosed after UnsubscribeRedirects,
	// an error wrapping ErrClosed after a stop, one wrapping
	// ErrActorRestarted after a restart; nil while C is open. Safe for
	// concurrent use.
	Err func() error
}

// Redirected is published when a guard change moves the current location.
type Redirected struct {
	Seq     uint64 // increases by one per published redirect
	From    string
	To      string
	Rule    string // rule of the first hop
	Guard   string // guard of the first hop, "" if none
	Dropped uint64 // events this subscriber lost to overflow before this one
}

// UnsubscribeRedirects ends a subscription; its channel is closed.
// Reply: *UnsubscribedRedirects.
type UnsubscribeRedirects struct{ ID uint64 }

// UnsubscribedRedirects is the reply to UnsubscribeRedirects.
type UnsubscribedRedirects struct {
	Found bool // false when ID was unknown (already ended)
}

// GetLocation asks for the current location. Reply: *CurrentLocation.
type GetLocation struct{}

// CurrentLocation is the reply to GetLocation.
type CurrentLocation struct {
	Location string // "" before the first Navigate
	NotFound bool
}

// RecheckGuards asks the actor to run the Check of every guard it was
// given (off its mailbox, with a timeout and panic recovery).
// Reply: *GuardStates once the checks have finished and been applied.
type RecheckGuards struct{}

// GetGuardStates asks for the guards' last known states.
// Reply: *GuardStates.
type GetGuardStates struct{}

// GuardStates is the reply to RecheckGuards and GetGuardStates. The maps
// are fresh copies owned by the receiver.
type GuardStates struct {
	Passes map[string]bool   // guards with a known state
	Errors map[string]string // guards whose last check failed, with the error text
}

// Replies may arrive after an asker gave up; they are not worth a
// dead-letter log line.
func (*Navigated) IgnoreDeadLetterLogging()             {}
func (*GuardChangedAck) IgnoreDeadLetterLogging()       {}
func (*RedirectSubscription) IgnoreDeadLetterLogging()  {}
func (*UnsubscribedRedirects) IgnoreDeadLetterLogging() {}
func (*CurrentLocation) IgnoreDeadLetterLogging()       {}
func (*GuardStates) IgnoreDeadLetterLogging()           {}
