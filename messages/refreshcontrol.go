package messages

import (
	"errors"
	"strconv"
	"time"
)

// ErrRefreshMisconfigured is wrapped by a refresher whose token endpoint
// blamed the client or the request (OAuth2 invalid_client,
// unauthorized_client, invalid_scope, invalid_request,
// unsupported_grant_type), not the refresh token. Not terminal: the
// session stays; the RefreshCoordinator backs off for its longest delay at
// once instead of walking up the steps, since a retry cannot succeed
// before someone corrects the configuration. The root package re-exports
// it.
var ErrRefreshMisconfigured = errors.New("pigeon: refresh misconfigured: the token endpoint refused the client or the request")

// ---- Refresh control (RefreshCoordinator). ----

// ForceRefresh asks for one refresh of account UID ("" = the current
// account) now, even though its token looks valid. A flight already
// running for that session is joined instead of starting another; during
// the back-off after a failure it fails fast with ErrRefreshUnavailable.
// Reply: *TokenGrant with the refreshed token, or a *Failure (ErrNoAuth,
// ErrUnknownAccount, ErrSessionExpired, ErrRefreshUnavailable,
// ErrLoggedOut, ErrClosed).
type ForceRefresh struct{ UID string }

// RefreshOutcome is how one refresh call ended.
type RefreshOutcome int

// Refresh outcomes.
const (
	// RefreshSucceeded: new tokens were saved.
	RefreshSucceeded RefreshOutcome = iota + 1
	// RefreshRejected: the refresh token was refused; the session ended
	// (ErrSessionExpired).
	RefreshRejected
	// RefreshFailed: a transient failure; tokens kept, the coordinator
	// backs off (Err matches ErrRefreshUnavailable, and
	// ErrRefreshMisconfigured for a configuration error).
	RefreshFailed
)

func (o RefreshOutcome) String() string {
	switch o {
	case RefreshSucceeded:
		return "succeeded"
	case RefreshRejected:
		return "rejected"
	case RefreshFailed:
		return "failed"
	}
	return "RefreshOutcome(" + strconv.Itoa(int(o)) + ")"
}

// RefreshEvent is one refresh call's outcome: the account, how it ended,
// the new expiry (RefreshSucceeded; zero when unknown) and the error
// (RefreshRejected, RefreshFailed). Err never carries a token.
type RefreshEvent struct {
	UID       string
	Outcome   RefreshOutcome
	ExpiresAt time.Time
	Err       error
}

// SubscribeRefreshes subscribes to every refresh call's outcome. The reply
// carries a channel with a bounded queue of Buffer events (zero value
// means DefaultRefreshEventBuffer); when it is full the oldest queued
// event is dropped, so the coordinator never blocks and a slow reader
// still ends on the newest outcomes. Flights that called no refresh
// function (a newer token already existed) and flights whose session was
// ended elsewhere (LogOut, RemoveAccount) publish nothing. Unsubscribe
// with UnsubscribeRefreshes. Reply: *RefreshSubscription.
type SubscribeRefreshes struct{ Buffer int }

// DefaultRefreshEventBuffer is SubscribeRefreshes' queue when Buffer is 0.
const DefaultRefreshEventBuffer = 64

// RefreshSubscription answers SubscribeRefreshes. C is closed by
// UnsubscribeRefreshes or when the coordinator stops.
type RefreshSubscription struct {
	ID uint64
	C  <-chan RefreshEvent
}

// UnsubscribeRefreshes ends a SubscribeRefreshes subscription. No reply.
type UnsubscribeRefreshes struct{ ID uint64 }

// AwaitFlight waits until the refresh flight of account UID has at least
// Waiters requests waiting for it (a test hook: it lets a test act once
// the requests it started have joined a flight, without sleeping). Reply:
// *FlightInfo once that holds; a *Failure when the flight ends first or
// the coordinator stops.
type AwaitFlight struct {
	UID     string
	Waiters int
}

// AwaitNoFlight waits until account UID has no refresh flight (a test
// hook, like AwaitFlight: a test that moves a fake clock waits with it for
// a background refresh it caused to end). Reply: *FlightInfo with Waiters
// 0, at once when no flight runs.
type AwaitNoFlight struct{ UID string }

// FlightInfo answers AwaitFlight and AwaitNoFlight: the flight's account
// and how many requests wait for it.
type FlightInfo struct {
	UID     string
	Waiters int
}

func (*RefreshSubscription) IgnoreDeadLetterLogging() {}
func (*FlightInfo) IgnoreDeadLetterLogging()          {}
