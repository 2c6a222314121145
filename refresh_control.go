package pigeon

import (
	"context"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// RefreshOutcome says how one refresh call ended (RefreshEvent.Outcome).
type RefreshOutcome = messages.RefreshOutcome

// Refresh outcomes.
const (
	// RefreshSucceeded: new tokens were saved (ExpiresAt is their expiry,
	// zero when unknown).
	RefreshSucceeded = messages.RefreshSucceeded
	// RefreshRejected: the refresh token was refused and the session ended;
	// Err matches ErrSessionExpired.
	RefreshRejected = messages.RefreshRejected
	// RefreshFailed: a transient failure; the tokens are kept and the
	// refresh backs off. Err matches ErrRefreshUnavailable (and
	// ErrRefreshMisconfigured for an OAuth2 configuration error).
	RefreshFailed = messages.RefreshFailed
)

// RefreshEvent is one refresh call's outcome, as SubscribeRefreshes
// publishes it: the account, the outcome, the new expiry and the error.
// No token is in it.
type RefreshEvent = messages.RefreshEvent

// Refresh forces one refresh of the current account now, even though its
// token looks valid (a server revoked it, its scopes changed), and returns
// when the new tokens are saved. A refresh already in flight for the
// account is joined, not doubled. Requests keep using the old token while
// it runs (a 401 joins the flight). During the back-off after a failed
// refresh it fails at once with ErrRefreshUnavailable, without calling the
// refresh endpoint. Errors: ErrNoAuth when signed out, ErrSessionExpired
// when the refresh token was refused (the session ended),
// ErrRefreshUnavailable (transient; tokens kept), ErrLoggedOut when the
// session ended meanwhile, ctx's error when ctx ends first (the refresh
// still completes and is saved), ErrClosed after Close.
func (p *AuthorizedPigeon) Refresh(ctx context.Context) error {
	return p.forceRefresh(ctx, "")
}

// Refresh forces one refresh of this account, like
// AuthorizedPigeon.Refresh, whatever the current account is;
// ErrUnknownAccount when the store does not hold it.
func (a *Account) Refresh(ctx context.Context) error {
	if err := a.usable(); err != nil {
		return err
	}
	return a.p.forceRefresh(ctx, a.uid)
}

func (p *AuthorizedPigeon) forceRefresh(ctx context.Context, uid string) error {
	if p.closing.Load() {
		return ErrClosed
	}
	_, err := actors.AskAs[*messages.TokenGrant](ctx, p.system, p.coordPID, &messages.ForceRefresh{UID: uid})
	if err != nil && p.closing.Load() && ctx.Err() == nil {
		return ErrClosed
	}
	return err
}

// SubscribeRefreshes returns every refresh call's outcome, of every
// account, from now on: one RefreshEvent per refresh that called the
// RefreshTokenManager (a request answered by a newer token that already
// existed is none; nor is a refresh whose session LogOut or RemoveAccount
// ended while it ran, whose result is dropped). The channel holds 64
// events; a reader that falls behind loses the oldest queued ones, so it
// always ends on the newest outcomes, and never blocks pigeon (the same
// policy as SubscribeAuth and SubscribeAccounts). It is closed when ctx
// ends or on Close. Safe for concurrent use.
func (p *AuthorizedPigeon) SubscribeRefreshes(ctx context.Context) (<-chan RefreshEvent, error) {
	if p.closing.Load() {
		return nil, ErrClosed
	}
	sub, err := actors.AskAs[*messages.RefreshSubscription](ctx, p.system, p.coordPID, &messages.SubscribeRefreshes{})
	if err != nil {
		if p.closing.Load() && ctx.Err() == nil {
			return nil, ErrClosed
		}
		return nil, err
	}
	p.refreshUnsubs.add(ctx, sub.ID, func() { p.system.Root.Send(p.coordPID, &messages.UnsubscribeRefreshes{ID: sub.ID}) })
	return sub.C, nil
}
