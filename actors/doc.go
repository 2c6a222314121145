// Package actors holds pigeon's actors and the helpers to talk to them.
//
// # Actors
//
// Each actor owns its state; nothing else touches it. Spawn any of them in
// your own *actor.ActorSystem from its Props constructor and talk to it
// with the plain message structs of package messages:
//
//   - NewAuthStoreProps: the account records, the current account and the
//     auth-status subscribers, over a persistence.Store.
//   - NewRefreshCoordinatorProps: one refresh in flight per account, its
//     waiters, backoff after failures, proactive refresh.
//   - NewSocketConnProps: one websocket connection (pigeon.v1 or socket.io
//     v4), its listeners, buffered emits and reconnects.
//   - NewModeSwitchProps: which client (ghost or authorized) is active.
//
// The guard actor lives in package guardactor.
//
// # Asking
//
// Ask and AskAs send a request and wait for its reply with a context: they
// honour cancellation and deadlines exactly and use a one-shot reply
// process instead of protoactor's Future, whose timeout races with a late
// reply (protoactor-go #1145). Every request message documents its reply
// type; an error reply is returned as the error. StopAndWait stops an actor
// and waits until it has released everything, again without a Future.
//
// # Rules every actor here keeps
//
// No mailbox blocks on I/O or user code: disk writes, refresh calls, dials
// and user callbacks run in goroutines the actor owns and report back as
// messages; user code runs with a timeout and a panic recovery. Timers send
// messages (no SetReceiveTimeout). A restart reloads state and fails every
// request the actor held with a clear error. Subscribers get bounded
// queues whose overflow policy is documented on each subscription; a slow
// subscriber never blocks an actor.
//
// NewSystem builds an ActorSystem whose own logs go to a zap logger
// (silent by default) and that installs no metrics provider.
package actors
