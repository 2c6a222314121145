package messages

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
)

// accountKey is the context key of ContextWithAccount.
type accountKey struct{}

// ContextWithAccount returns a copy of ctx that selects the account uid for
// every request made with it through an authorized client's HTTP layer
// (its verbs and HTTPClient): the request carries uid's token and a 401
// refreshes uid's session only. An empty uid selects the current account.
func ContextWithAccount(ctx context.Context, uid string) context.Context {
	return context.WithValue(ctx, accountKey{}, uid)
}

// AccountFromContext returns the account ContextWithAccount put into ctx,
// "" when none (the current account).
func AccountFromContext(ctx context.Context) string {
	uid, _ := ctx.Value(accountKey{}).(string)
	return uid
}

// AccountStatus is one value of the all-accounts status stream: UID
// signed in (Authenticated: a session started by a save) or its session
// ended (Unauthenticated: logout, removal, a refused refresh).
type AccountStatus struct {
	UID   string
	State AuthState
}

// SubscribeAccounts subscribes to every account's status: one value when
// an account's session starts (a save of an account not stored) and one
// when it ends (logout, removal, a refused refresh); refreshes, re-saves
// and switches are no transitions. With PID set, the store sends
// *AccountChanged messages to that actor (unbounded mailbox). Otherwise
// the reply carries a channel with a bounded queue of Buffer entries (zero
// value means 1024); when it is full the oldest value is dropped, so the
// store never blocks. No value is sent for the accounts already stored:
// list them (ListAuths) after subscribing. Unsubscribe with
// UnsubscribeAuth. Reply: *AccountsSubscription.
type SubscribeAccounts struct {
	PID    *actor.PID
	Buffer int
}

// AccountChanged is sent to PID subscribers of SubscribeAccounts.
type AccountChanged struct{ Status AccountStatus }

// AccountsSubscription answers SubscribeAccounts. C is closed by
// UnsubscribeAuth or when the store stops.
type AccountsSubscription struct {
	ID uint64
	C  <-chan AccountStatus
}

func (*AccountsSubscription) IgnoreDeadLetterLogging() {}
func (*AccountChanged) IgnoreDeadLetterLogging()       {}
