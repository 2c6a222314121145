// Package pigeon is an auth-aware HTTP and realtime client runtime for Go
// programs that talk to a REST + websocket backend on behalf of users:
// long-running services, bots, gateways and CLIs.
//
// # Clients
//
// NewAuthorized returns an AuthorizedPigeon: typed HTTP verbs carrying the
// current account's bearer token, tokens kept in an encrypted badger store,
// several accounts with a current one (SaveNewAuth, SwitchAccount, LogOut),
// an auth-status stream (SubscribeAuth), and refresh on 401 with one
// refresh in flight per account: every request refused meanwhile waits for
// it and is replayed once with the new token. NewGhost returns a
// GhostPigeon, the same API for anonymous users with an optional bearer.
// NewSwitch joins both behind one AppPigeon that changes mode at run time.
//
// # Actors
//
// State lives in protoactor-go actors: the AuthStore (records, current
// account, subscribers), the RefreshCoordinator (the single flight and its
// waiters), one SocketConn per websocket, the guard evaluator and the mode
// switch. The facade is a thin synchronous layer over them. Programs that
// run their own *actor.ActorSystem spawn the same actors from package
// actors' Props constructors and talk to them with package messages alone.
//
// # Errors
//
// Sentinels (ErrNoAuth, ErrSessionExpired, ErrRefreshUnavailable,
// ErrLoggedOut, ErrBodyNotReplayable, ErrClosed, ...) match with errors.Is
// through every wrapper. An answer with status >= 400 is returned with its
// Response and a *StatusError.
//
// # Secrets
//
// Tokens are Secrets: they print as [REDACTED] in fmt, slog and zap, and no
// log line, error string or %v output of pigeon contains one.
//
// # Concurrency
//
// AuthorizedPigeon, GhostPigeon and Switch are safe for concurrent use.
// Close is idempotent and safe concurrently with everything else; after it
// no goroutine of the client is left.
package pigeon
