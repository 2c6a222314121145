package messages

import "time"

// ---- RefreshCoordinator protocol. Every request is answered with the reply
// type its comment names, or with a *Failure wrapping one of ErrNoAuth,
// ErrSessionExpired, ErrRefreshUnavailable, ErrLoggedOut or ErrClosed. ----

// AcquireToken asks for a usable token of account UID ("" = the current
// account), waiting for a refresh in flight (or due: inside the last
// seconds of the token's life). Reply: *TokenGrant, or ErrNoAuth when
// signed out, or ErrUnknownAccount when UID is not stored.
type AcquireToken struct{ UID string }

// ReportUnauthorized reports that a request sent with UID's token Version in
// session Generation was refused (ShouldRefresh said so). If a newer token
// exists it is granted at once; otherwise one refresh runs for all
// reporters and each waits for it. Reply: *TokenGrant.
type ReportUnauthorized struct {
	UID        string
	Generation uint64
	Version    uint64
}

// RefreshAhead hints that UID's token Version is inside its refresh-ahead
// window: a background refresh starts unless one is running or backing
// off. No reply.
type RefreshAhead struct {
	UID        string
	Generation uint64
	Version    uint64
}

// TokenGrant answers AcquireToken and ReportUnauthorized: the token to
// (re)send the request with.
type TokenGrant struct{ Snapshot TokenSnapshot }

// RefreshedTokens is what a refresh function returns. An empty RefreshToken
// keeps the old one; a zero ExpiresAt means unknown (a JWT `exp` claim is
// read if present). Data nil keeps the stored data.
type RefreshedTokens struct {
	AccessToken  Secret
	RefreshToken Secret
	ExpiresAt    time.Time
	Data         []byte
}

// GetRefreshStats asks for the coordinator's counters. Reply: *RefreshStats.
type GetRefreshStats struct{}

// RefreshStats answers GetRefreshStats.
type RefreshStats struct {
	Started   uint64 // refresh calls started
	Succeeded uint64
	Rejected  uint64 // terminal
	Failed    uint64 // transient
	Replays   uint64 // grants answered without a refresh (a newer token existed)
}

func (*TokenGrant) IgnoreDeadLetterLogging()   {}
func (*RefreshStats) IgnoreDeadLetterLogging() {}
