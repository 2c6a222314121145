package messages

import (
	"github.com/asynkron/protoactor-go/actor"
	"strconv"

	"encoding/json"
	"time"
)

// AuthRecord is one account's stored credentials. Records are values: an
// actor never shares a record it will change later. Safe for concurrent
// reads.
type AuthRecord struct {
	UID          string
	AccessToken  Secret
	RefreshToken Secret
	// ExpiresAt is when the access token expires; zero means unknown.
	ExpiresAt time.Time
	// IssuedAt is when these tokens were saved (by a login or a refresh);
	// the refresh-ahead window is bounded by half of ExpiresAt-IssuedAt.
	IssuedAt time.Time
	// Data is the application's own JSON about the account (profile, roles).
	Data json.RawMessage
}

// Clone returns a deep copy (Data is copied).
func (r AuthRecord) Clone() AuthRecord {
	if r.Data != nil {
		r.Data = append(json.RawMessage(nil), r.Data...)
	}
	return r
}

// AuthState is whether a client has a current account.
type AuthState int

const (
	// Unauthenticated: no current account (the zero value).
	Unauthenticated AuthState = iota
	// Authenticated: a current account with stored tokens.
	Authenticated
)

func (s AuthState) String() string {
	switch s {
	case Unauthenticated:
		return "Unauthenticated"
	case Authenticated:
		return "Authenticated"
	}
	return "AuthState(" + strconv.Itoa(int(s)) + ")"
}

// AuthStatus is one value of the auth-status stream: the state and, when
// Authenticated, the current account's UID.
type AuthStatus struct {
	State AuthState
	UID   string
}

// TokenSnapshot is an immutable view of one account's usable tokens, as the
// HTTP transport needs them: which account, which session (Generation) and
// which tokens (Version) a request is sent with. Published by the AuthStore
// through an atomic pointer; never mutated after publication.
type TokenSnapshot struct {
	UID         string
	AccessToken Secret
	ExpiresAt   time.Time // zero = unknown
	IssuedAt    time.Time
	// Generation identifies the account's session: it changes when the
	// session ends (LogOut, a rejected refresh, removal) and a new one is
	// saved. Switching accounts does not end a session.
	Generation uint64
	// Version increases with every save or successful refresh.
	Version uint64
	// header is the Authorization value made once for AccessToken by
	// WithAuthorization (nil: made on each call).
	header *authHeader
}

// authHeader is an Authorization value and the token it was made of.
type authHeader struct {
	of Secret
	v  []string
}

// Authorization returns the value of the Authorization header that sends
// AccessToken, "Bearer <token>", as the one-element slice an http.Header
// holds. For a snapshot made by WithAuthorization (every snapshot pigeon
// publishes) it is made once and shared by every request sent with the
// snapshot: callers must not modify it.
func (s *TokenSnapshot) Authorization() []string {
	if h := s.header; h != nil && h.of == s.AccessToken {
		return h.v
	}
	return []string{"Bearer " + string(s.AccessToken)}
}

// WithAuthorization returns s with its Authorization value made once, so
// that requests sent with it share one header value instead of building
// their own. A copy whose AccessToken is changed makes its own again.
func (s TokenSnapshot) WithAuthorization() TokenSnapshot {
	s.header = &authHeader{of: s.AccessToken, v: []string{"Bearer " + string(s.AccessToken)}}
	return s
}

// EndReason says why a session generation ended.
type EndReason int

const (
	// EndLoggedOut: LogOut removed the tokens (requests fail ErrLoggedOut).
	EndLoggedOut EndReason = iota + 1
	// EndExpired: the refresh token was rejected (ErrSessionExpired).
	EndExpired
)

// Err returns the sentinel error callers of that session get.
func (r EndReason) Err() error {
	if r == EndExpired {
		return ErrSessionExpired
	}
	return ErrLoggedOut
}

// ---- AuthStore protocol. Every request is answered with the reply type its
// comment names, or with an error value (use actors.Ask / actors.AskAs). ----

// SaveAuth stores a complete record (a login or signup) and, when
// MakeCurrent, makes it the current account. The record's session starts
// anew if it had ended; its Version is bumped. Reply: *SavedAuth.
type SaveAuth struct {
	Record      AuthRecord
	MakeCurrent bool
}

// SavedAuth answers SaveAuth and UpdateTokens with the stored snapshot.
type SavedAuth struct{ Snapshot TokenSnapshot }

// GetCurrentAuth asks for the current account. Reply: *CurrentAuth, or
// ErrNoAuth when there is none.
type GetCurrentAuth struct{}

// CurrentAuth answers GetCurrentAuth.
type CurrentAuth struct {
	Record   AuthRecord
	Snapshot TokenSnapshot
}

// GetAuth asks for one account's record by UID. Reply: *CurrentAuth (the
// named account, current or not), or ErrNoAuth when it is not stored.
type GetAuth struct{ UID string }

// ListAuths asks for every stored account, sorted by UID. Reply: *AuthList.
type ListAuths struct{}

// AuthList answers ListAuths.
type AuthList struct {
	Records []AuthRecord
	Current string
}

// SwitchAccount makes a stored account current. Reply: *SavedAuth, or
// ErrUnknownAccount when the UID is not stored.
type SwitchAccount struct{ UID string }

// LogOut removes the current account's tokens; there is no current account
// afterwards. Requests of that session fail with ErrLoggedOut. Reply:
// *LoggedOut (also when nobody was signed in: UID is then "").
type LogOut struct{}

// LoggedOut answers LogOut and RemoveAccount: UID is the account removed,
// WasCurrent whether it was the current account when it was removed.
type LoggedOut struct {
	UID        string
	WasCurrent bool
}

// RemoveAccount removes one account's tokens, current or not (one synced
// write). If it was current there is no current account afterwards.
// Requests of that session fail with ErrLoggedOut, as after LogOut.
// Reply: *LoggedOut, or ErrUnknownAccount when the UID is not stored.
type RemoveAccount struct{ UID string }

// UpdateTokens stores the result of a refresh for UID, only if the
// account's session is still Generation (else the result is discarded and
// the reply is the session's end error: ErrLoggedOut or ErrSessionExpired).
// An empty RefreshToken keeps the stored one. Access, refresh token and
// expiry are written in one synced transaction before the reply. No status
// event is published (a refresh is not a transition). Reply: *SavedAuth.
type UpdateTokens struct {
	UID          string
	Generation   uint64
	AccessToken  Secret
	RefreshToken Secret
	ExpiresAt    time.Time
	IssuedAt     time.Time
	Data         []byte // nil keeps the stored Data
}

// EndSession ends UID's session Generation for Reason (a rejected refresh):
// its tokens are removed from the store; if it was current there is no
// current account afterwards and one Unauthenticated status is published.
// A stale Generation is a no-op. Reply: *SessionEnded.
type EndSession struct {
	UID        string
	Generation uint64
	Reason     EndReason
}

// SessionEnded answers EndSession; Ended is false for a stale generation.
type SessionEnded struct{ Ended bool }

// SessionEndReason asks why UID's Generation is no longer usable. Reply:
// *SessionState.
type SessionEndReason struct {
	UID        string
	Generation uint64
}

// SessionState answers SessionEndReason. Reason is 0 when Generation is
// still the account's live session.
type SessionState struct {
	Reason   EndReason
	Snapshot TokenSnapshot // the live snapshot when Reason is 0
}

// SubscribeAuth subscribes to auth status. With PID set, the store sends
// *AuthChanged messages to that actor (its mailbox is unbounded: for actors
// that keep up). Otherwise the reply carries a channel with a bounded queue
// of Buffer entries (zero value means 16); when it is full the oldest
// status is dropped, so a slow reader always ends on the newest status and
// never blocks the store. The current status is delivered first. With
// Tokens set, a PID subscriber also gets *TokensChanged for every token
// change (saves and refreshes). With UID set (channel subscriptions
// only), the stream is that account's: its state first (Authenticated
// while it is stored), then one value when its session starts or ends;
// switching the current account is no transition of it. Reply:
// *AuthSubscription.
type SubscribeAuth struct {
	PID    *actor.PID
	Buffer int
	Tokens bool
	UID    string
}

// AuthSubscription answers SubscribeAuth. C is nil for PID subscriptions;
// it is closed by UnsubscribeAuth or when the store stops.
type AuthSubscription struct {
	ID uint64
	C  <-chan AuthStatus
}

// UnsubscribeAuth ends a subscription. Reply: *Unsubscribed.
type UnsubscribeAuth struct{ ID uint64 }

// Unsubscribed answers UnsubscribeAuth.
type Unsubscribed struct{}

// AuthChanged is sent to PID subscribers on every real transition (login,
// switch, logout, expiry) and once on subscribe.
type AuthChanged struct{ Status AuthStatus }

// TokensChanged is sent to PID subscribers that asked for Tokens: once per
// stored account on subscribe, then whenever an account's tokens change or
// its session ends (Ended non-zero: the tokens are gone). Current says
// whether the account is the current one.
type TokensChanged struct {
	Snapshot TokenSnapshot
	Current  bool
	Ended    EndReason
}

// IgnoreDeadLetterLogging: a reply to a caller that gave up is not logged.
func (*SavedAuth) IgnoreDeadLetterLogging()        {}
func (*CurrentAuth) IgnoreDeadLetterLogging()      {}
func (*AuthList) IgnoreDeadLetterLogging()         {}
func (*LoggedOut) IgnoreDeadLetterLogging()        {}
func (*SessionEnded) IgnoreDeadLetterLogging()     {}
func (*SessionState) IgnoreDeadLetterLogging()     {}
func (*AuthSubscription) IgnoreDeadLetterLogging() {}
func (*Unsubscribed) IgnoreDeadLetterLogging()     {}
func (*UnsubscribeAuth) IgnoreDeadLetterLogging()  {}
func (*AuthChanged) IgnoreDeadLetterLogging()      {}
func (*TokensChanged) IgnoreDeadLetterLogging()    {}

// Failure is the error reply of every pigeon actor: it wraps the error (so
// errors.Is sees the sentinel) and is not logged when the caller is gone.
type Failure struct{ Err error }

func (f *Failure) Error() string            { return f.Err.Error() }
func (f *Failure) Unwrap() error            { return f.Err }
func (f *Failure) IgnoreDeadLetterLogging() {}
