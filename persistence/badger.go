package persistence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/apppigeon/pigeon/messages"
)

// BadgerStore is a Store on disk in a badger/v4 database, encrypted at rest
// by default. Every Apply is one badger transaction, synced to disk before
// it returns, so after a crash (even kill -9 mid-write) the store holds
// either the old or the new state of each Apply, never a mix.
//
// A BadgerStore is safe for concurrent use by multiple goroutines: Load
// runs concurrently with everything, Apply calls are serialised, Close waits
// for in-flight calls. One directory can be open in one BadgerStore at a
// time (ErrLocked otherwise).
type BadgerStore struct {
	dir string

	writeMu sync.Mutex   // serialises Apply
	mu      sync.RWMutex // read-held by Load/Apply, write-held by Close
	closed  bool
	db      *badger.DB
}

// OpenBadger opens (creating if needed, mode 0700) the store in dir.
//
// # Encryption
//
// The store is encrypted with AES (badger's EncryptionKey) using the first
// key found of:
//   - WithEncryptionKey (16, 24 or 32 bytes);
//   - the environment variable PIGEON_STORE_KEY (base64; looked up through
//     WithGetenv, default os.Getenv);
//   - the key file (WithKeyFile, default DefaultKeyFile(dir) = "<dir>.key",
//     beside the data directory): created with a random 32-byte key, mode
//     0600, on first use, and reused afterwards.
//
// WithoutEncryption turns encryption off. A malformed key is ErrInvalidKey;
// a key that differs from the one the directory was created with is
// ErrWrongKey, never garbage data. Keys appear in no log and no error.
//
// # Errors
//
// A directory held by another open store (another process, or another
// OpenBadger in this process) is ErrLocked. Errors name the directory.
//
// OpenBadger is safe for concurrent use. The caller must Close the store;
// Close stops every goroutine badger started.
func OpenBadger(dir string, opts ...Option) (*BadgerStore, error) {
	if dir == "" {
		return nil, errors.New("pigeon/persistence: empty store directory")
	}
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	key, err := resolveKey(dir, &c)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pigeon/persistence: creating store directory: %w", err)
	}
	if err := checkRegistry(dir, key); err != nil {
		return nil, err
	}
	db, err := badger.Open(badgerOptions(dir, key, newBadgerLogger(c.logger)))
	if err != nil {
		return nil, openError(dir, err)
	}
	return &BadgerStore{dir: dir, db: db}, nil
}

// badgerOptions tunes badger for a tiny store (a handful of small records)
// that opens fast in little memory and syncs every write.
func badgerOptions(dir string, key []byte, logger badger.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(logger).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(2 << 20).     // memtable arena and WAL file: 2 MiB
		WithValueThreshold(64 << 10).  // values up to 64 KiB live in the LSM tree
		WithValueLogFileSize(1 << 20). // the minimum badger accepts
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2). // badger's minimum (0 disables compaction)
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20). // > 0: required with encryption
		WithCompression(options.None).
		WithMetricsEnabled(false).
		WithDetectConflicts(false). // Apply is serialised by BadgerStore
		WithNumGoroutines(1)
	if len(key) > 0 {
		o = o.WithEncryptionKey(key)
	}
	return o
}

// lockMessage is how badger says the directory is locked (badger wraps
// the flock error into text, so errors.Is cannot see it).
const lockMessage = "Another process is using this Badger database"

func openError(dir string, err error) error {
	switch {
	case strings.Contains(err.Error(), lockMessage):
		return fmt.Errorf("pigeon/persistence: store directory %q is in use by another process or another open store: "+
			"close the other one or use another directory: %w", dir, ErrLocked)
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		return wrongKey(dir)
	case errors.Is(err, badger.ErrInvalidEncryptionKey):
		return fmt.Errorf("pigeon/persistence: cannot open store %q: %w", dir, ErrInvalidKey)
	}
	return fmt.Errorf("pigeon/persistence: cannot open store %q: %w", dir, err)
}

// Dir returns the store's data directory. Safe for concurrent use.
func (s *BadgerStore) Dir() string { return s.dir }

// Load returns the stored state (records deep-copied, sorted by UID). A
// value that cannot be decoded fails the whole Load with a *DecodeError
// (errors.Is ErrCorrupt) naming its key. After Close it returns
// messages.ErrClosed.
func (s *BadgerStore) Load(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return State{}, messages.ErrClosed
	}
	var st State
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(recPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := string(item.Key())
			var rec messages.AuthRecord
			err := item.Value(func(v []byte) error {
				var err error
				rec, err = decodeRecord(key, v)
				return err
			})
			if err != nil {
				return err
			}
			st.Records = append(st.Records, rec)
		}
		cur, err := readCurrent(txn)
		if err != nil {
			return err
		}
		if cur != "" {
			if _, err := txn.Get(recKey(cur)); err != nil {
				return &DecodeError{Key: currentKey, Err: fmt.Errorf("current account %q has no record: %v", cur, err)}
			}
		}
		st.Current = cur
		return nil
	})
	if err != nil {
		return State{}, wrapDBError("load", err)
	}
	return st, nil
}

// Apply writes ch in one badger transaction, synced to disk before it
// returns (see Change and Store.Apply). On any error nothing was written.
// After Close it returns messages.ErrClosed; a done ctx returns ctx.Err()
// before anything is written (a transaction, once started, is not
// interrupted).
func (s *BadgerStore) Apply(ctx context.Context, ch Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return messages.ErrClosed
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		p, err := makePlan(ch, badgerView{txn})
		if err != nil {
			return err
		}
		for _, uid := range p.del {
			if err := txn.Delete(recKey(uid)); err != nil {
				return err
			}
		}
		for _, r := range p.put {
			v, err := encodeRecord(r)
			if err != nil {
				return err
			}
			if err := txn.Set(recKey(r.UID), v); err != nil {
				return err
			}
		}
		switch {
		case !p.setCurrent:
		case p.current == "":
			return txn.Delete([]byte(currentKey))
		default:
			return txn.Set([]byte(currentKey), encodeCurrent(p.current))
		}
		return nil
	})
	if err != nil {
		return wrapDBError("apply", err)
	}
	return nil
}

// Close closes the database and stops badger's goroutines, waiting for
// in-flight Load and Apply calls. Later Load and Apply calls return
// messages.ErrClosed. Close is idempotent: later calls return nil.
func (s *BadgerStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("pigeon/persistence: closing store %q: %w", s.dir, err)
	}
	return nil
}

// badgerView answers makePlan's questions inside a transaction.
type badgerView struct{ txn *badger.Txn }

func (v badgerView) has(uid string) (bool, error) {
	_, err := v.txn.Get(recKey(uid))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, err
}

func (v badgerView) current() (string, error) { return readCurrent(v.txn) }

func readCurrent(txn *badger.Txn) (string, error) {
	item, err := txn.Get([]byte(currentKey))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var cur string
	err = item.Value(func(v []byte) error {
		var err error
		cur, err = decodeCurrent(v)
		return err
	})
	return cur, err
}

// wrapDBError leaves this package's own errors alone and prefixes badger's.
func wrapDBError(op string, err error) error {
	var de *DecodeError
	switch {
	case errors.As(err, &de), errors.Is(err, ErrUnknownAccount), errors.Is(err, ErrInvalidChange):
		return err
	case errors.Is(err, badger.ErrDBClosed):
		return messages.ErrClosed
	}
	return fmt.Errorf("pigeon/persistence: %s: %w", op, err)
}
