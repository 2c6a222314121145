package messages

import (
	"errors"
	"fmt"
)

// Sentinel errors of pigeon's protocols. The root package re-exports each of
// them under the same name; errors.Is matches them through every wrapper
// pigeon adds.
var (
	// ErrNoAuth: there is no current account (signed out, or never signed in).
	ErrNoAuth = errors.New("pigeon: no current account")
	// ErrUnknownAccount: SwitchAccount, RemoveAccount (or another request
	// naming an account) of a UID the store does not hold.
	ErrUnknownAccount = errors.New("pigeon: unknown account")
	// ErrSessionExpired: the refresh token was rejected; the account's tokens
	// have been removed. Terminal for that session.
	ErrSessionExpired = errors.New("pigeon: session expired: refresh token rejected")
	// ErrRefreshUnavailable: a refresh failed transiently (5xx, network error,
	// timeout, a panicking or hanging RefreshTokenManager). Tokens are kept.
	ErrRefreshUnavailable = errors.New("pigeon: token refresh unavailable")
	// ErrLoggedOut: the session a request belonged to was ended by LogOut.
	ErrLoggedOut = errors.New("pigeon: logged out")
	// ErrBodyNotReplayable: a request had to be replayed after a refresh but
	// its body cannot be read again (no GetBody).
	ErrBodyNotReplayable = errors.New("pigeon: request body cannot be replayed")
	// ErrClosed: the client or actor was closed.
	ErrClosed = errors.New("pigeon: closed")
	// ErrSocketNotInitialized: a socket method was called before SocketInit
	// (eager mode) or after DisconnectSocket.
	ErrSocketNotInitialized = errors.New("pigeon: socket not initialized")
	// ErrSlowConsumer: a subscriber's bounded queue overflowed under the
	// close policy; its channel was closed.
	ErrSlowConsumer = errors.New("pigeon: slow consumer")
	// ErrBufferFull: a bounded buffer (the emit buffer while disconnected)
	// has no room; nothing was queued.
	ErrBufferFull = errors.New("pigeon: buffer full")
	// ErrRefreshRejected is wrapped by a RefreshTokenManager to say the
	// refresh token was refused. Terminal: the session ends with
	// ErrSessionExpired. Any other error from a refresher is transient.
	ErrRefreshRejected = errors.New("pigeon: refresh token rejected")
)

// ErrActorRestarted is wrapped by the error every subscriber and waiting
// requester of an actor gets when its supervisor restarts it after a
// failure: their subscriptions and requests did not survive the restart.
var ErrActorRestarted = errors.New("pigeon: actor restarted after a failure")

// PanicError is a panic of user code (a callback such as a socket
// interceptor) caught by an actor and turned into an error.
type PanicError struct {
	// Callback names the user code that panicked.
	Callback string
	// Value is what it panicked with.
	Value any
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("pigeon: %s panicked: %v", e.Callback, e.Value)
}
