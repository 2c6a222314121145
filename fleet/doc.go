// Package fleet is pigeon's fleet mode (pigeon.WithEtcd): the accounts of
// several processes kept in one etcd v3 cluster, with one refresh per
// expiry across all of them.
//
// # Records
//
// Each account is the key prefix/acct/<uid>/rec, its value the record
// sealed with AES-GCM under the store key; etcd never holds a plaintext
// token. prefix/current is the fleet's current account.
//
// # Refresh
//
// Store.Refresh wraps the refresh function of the RefreshCoordinator: a
// newer stored record is adopted; else the account's lock
// (concurrency.Mutex on this process's lease, TTL >= 5 s) is taken, the
// record read again, the refresher called with the refresh token stored
// in etcd, and the result written in a transaction guarded by lock
// ownership and the revision read. A rejected refresh deletes the record
// under the same guard.
//
// # Watch
//
// Store.Follow feeds the other processes' changes into the local
// AuthStore: refreshed tokens as UpdateTokens, deletions as EndSession,
// a new current account as SwitchAccount.
//
// docs/fleet.md in the repository lists the behaviour and the tests.
package fleet
