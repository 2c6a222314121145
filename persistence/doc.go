// Package persistence stores pigeon's accounts: many account records
// (messages.AuthRecord) keyed by UID and a pointer to the current account.
//
// # Stores
//
// Store is the interface the AuthStore actor uses. Two implementations:
//
//   - BadgerStore (OpenBadger): badger/v4 on disk, encrypted at rest by
//     default, every Apply whole in one transaction synced to disk before
//     it returns; concurrent Applies share one transaction and one fsync
//     (group commit).
//   - MemoryStore (NewMemory): the same semantics in memory, for tests and
//     short-lived programs.
//
// Both are safe for concurrent use and copy records in and out. Both are
// PagedLoaders too: LoadPages streams the state in pages of one snapshot,
// so a large store (100,000 accounts) need not be decoded, or handed on,
// in one piece. The function LoadPages streams any Store.
//
// # Semantics
//
// A Change is applied whole or not at all. Put replaces records by UID;
// Delete removes them (deleting the current account leaves none current
// unless SetCurrent names another); SetCurrent moves the current pointer
// and must name an account that exists after the change (ErrUnknownAccount
// otherwise). After Close, Load and Apply return messages.ErrClosed.
//
// # Encryption and keys
//
// OpenBadger encrypts with badger's AES encryption. The key comes from
// WithEncryptionKey, else the PIGEON_STORE_KEY environment variable
// (base64), else a key file "<dir>.key" beside the data directory, created
// with a random 32-byte key (mode 0600) on first use. The data directory is
// created with mode 0700. A wrong key is ErrWrongKey; a directory open
// elsewhere is ErrLocked. Keys and tokens are never logged and never appear
// in errors.
//
// # Format
//
// Each record is one badger key ("rec/<uid>") whose value carries a schema
// version; the current pointer is "meta/current". A value that cannot be
// decoded is a *DecodeError naming its key (errors.Is ErrCorrupt): nothing
// is dropped silently.
//
// # Default location
//
// DefaultDir(name) is os.UserConfigDir()/pigeon/<name>.
package persistence
