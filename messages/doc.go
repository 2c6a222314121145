// Package messages is the protocol of every pigeon actor: plain structs,
// sent as pointers and never mutated after sending, one file per actor
// (auth.go: AuthStore; refresh.go and refreshcontrol.go:
// RefreshCoordinator; socket.go: SocketConn; guard.go: the guard actor;
// mode.go: ModeSwitch), plus the sentinel errors (errors.go) that the
// root package re-exports and the Secret type that redacts itself.
//
// Every request documents its reply type. Replies and events implement
// protoactor's IgnoreDeadLetterLogging, so a reply to a caller that gave up
// is dropped quietly. Error replies are *Failure values: errors.Is sees the
// sentinel they wrap.
//
// This package imports nothing else of pigeon's.
package messages
