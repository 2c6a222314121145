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
// by default. Every Apply is applied whole in one badger transaction,
// synced to disk before it returns, so after a crash (even kill -9
// mid-write) the store holds either the old or the new state of each
// Apply, never a mix.
//
// # Group commit
//
// Concurrent Apply calls share transactions: one goroutine owned by the
// store (stopped by Close) takes every Apply queued while the previous
// transaction was committing and commits them together, in the order
// they were queued, with one fsync, made by a second goroutine of the
// store while the next batch is staged. Each call returns only after the
// transaction holding its change is durable; a failed commit fails every
// call of that transaction, and nothing of it is written. The outcome is
// that of the Applies run one after another in queue order: each is
// validated against the changes queued before it (a change that fails
// validation fails alone), and of two Puts of one UID the later wins. So
// a thousand accounts refreshing at once cost a few fsyncs, not a
// thousand.
//
// A BadgerStore is safe for concurrent use by multiple goroutines: Load
// and LoadPages run concurrently with everything, Apply calls are
// committed in queue order, Close waits for in-flight calls. One directory
// can be open in one BadgerStore at a time (ErrLocked otherwise).
type BadgerStore struct {
	dir string

	mu     sync.RWMutex // read-held by Load/LoadPages/Apply, write-held by Close
	closed bool
	db     *badger.DB
	commit *committer
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
	bo := badgerOptions(dir, key, newBadgerLogger(c.logger))
	mk, err := checkUnderLock(dir, bo)
	if err != nil {
		return nil, err
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, openError(dir, err)
	}
	if err := checkMarker(dir, db, mk); err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &BadgerStore{dir: dir, db: db, commit: newCommitter(db, bo.ValueThreshold, newSpaceGuard(dir, bo.MemTableSize), mk)}
	s.commit.start()
	return s, nil
}

// checkUnderLock runs checkFiles and reads the marker while holding
// badger's directory lock, so a store another open store is writing is
// ErrLocked, never a half-written file taken for damage.
func checkUnderLock(dir string, bo badger.Options) (*marker, error) {
	release, ok, err := lockDir(dir)
	switch {
	case err != nil:
		return nil, fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	case !ok:
		return nil, lockedError(dir)
	}
	defer release()
	if err := checkFiles(dir, bo); err != nil {
		return nil, err
	}
	return openMarker(dir)
}

// badgerOptions tunes badger for a store of small records (a handful, or
// 100,000 in gateway mode) that opens fast in little memory (a few MiB
// whatever the number of accounts) and syncs every write.
func badgerOptions(dir string, key []byte, logger badger.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(logger).
		WithSyncWrites(false). // the committer syncs each transaction once (spaceGuard.after)
		WithNumVersionsToKeep(1).
		WithMemTableSize(4 << 20).     // memtable arena and WAL file: 4 MiB; a transaction holds up to 15 %: ~1,000 token updates
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
		WithDetectConflicts(false). // one goroutine writes: the committer
		WithNumGoroutines(1)
	if len(key) > 0 {
		o = o.WithEncryptionKey(key)
	}
	return o
}

// lockMessage is how badger says the directory is locked (badger wraps
// the flock error into text, so errors.Is cannot see it).
const lockMessage = "Another process is using this Badger database"

func lockedError(dir string) error {
	return fmt.Errorf("pigeon/persistence: store directory %q is in use by another process or another open store: "+
		"close the other one or use another directory: %w", dir, ErrLocked)
}

func openError(dir string, err error) error {
	switch {
	case strings.Contains(err.Error(), lockMessage):
		return lockedError(dir)
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
// messages.ErrClosed. It is LoadPages gathered into one State; a large
// store is better streamed with LoadPages.
func (s *BadgerStore) Load(ctx context.Context) (State, error) {
	var st State
	cur, err := s.LoadPages(ctx, DefaultPageSize, func(page []messages.AuthRecord) error {
		if st.Records == nil {
			st.Records = page
		} else {
			st.Records = append(st.Records, page...)
		}
		return nil
	})
	if err != nil {
		return State{}, err
	}
	st.Current = cur
	return st, nil
}

// LoadPages streams the stored state: it calls page with successive pages
// of at most pageSize records (pageSize <= 0 means DefaultPageSize), in
// UID order across pages, and then returns the current account. Every
// page and the current account come from one consistent snapshot, however
// many Applies commit meanwhile. The caller owns each page (records
// deep-copied). A value that cannot be decoded stops it with a
// *DecodeError (errors.Is ErrCorrupt); so does an error page returns,
// returned as is, and a done ctx (checked between pages). After Close it
// returns messages.ErrClosed.
//
// Only one page of records is decoded at a time, so a caller that hands
// pages on (to an actor, as messages) holds the store for one page, not
// for the whole load. page must not call the store's methods: Close waits
// for LoadPages to return.
func (s *BadgerStore) LoadPages(ctx context.Context, pageSize int, page func([]messages.AuthRecord) error) (current string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", messages.ErrClosed
	}
	var pageErr error // from page or ctx: returned as is
	err = s.db.View(func(txn *badger.Txn) error {
		cur, err := readCurrent(txn)
		if err != nil {
			return err
		}
		if cur != "" {
			if _, err := txn.Get(recKey(cur)); err != nil {
				return &DecodeError{Key: currentKey, Err: fmt.Errorf("current account %q has no record: %v", cur, err)}
			}
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(recPrefix)})
		defer it.Close()
		var recs []messages.AuthRecord
		flush := func() error {
			if len(recs) == 0 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			p := recs
			recs = nil
			return page(p)
		}
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
			if recs == nil {
				recs = make([]messages.AuthRecord, 0, pageSize)
			}
			recs = append(recs, rec)
			if len(recs) == pageSize {
				if pageErr = flush(); pageErr != nil {
					return pageErr
				}
			}
		}
		if pageErr = flush(); pageErr != nil {
			return pageErr
		}
		current = cur
		return nil
	})
	if pageErr != nil {
		return "", pageErr
	}
	if err != nil {
		return "", wrapDBError("load", err)
	}
	return current, nil
}

// Apply writes ch whole in a badger transaction, synced to disk before it
// returns (see Change and Store.Apply); concurrent calls share
// transactions (see Group commit). On any error nothing of ch was
// written. After Close it returns messages.ErrClosed; a ctx that is done
// before the committer takes ch returns ctx.Err() and nothing is written
// (a change, once taken, is not interrupted: Apply then waits for its
// transaction, which takes one fsync).
func (s *BadgerStore) Apply(ctx context.Context, ch Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return messages.ErrClosed
	}
	r, err := newApplyReq(ctx, ch)
	if err != nil {
		return wrapDBError("apply", err)
	}
	if err := s.commit.apply(r); err != nil {
		return wrapDBError("apply", err)
	}
	return nil
}

// ApplyAsync is Apply without waiting: it queues ch and calls done once,
// with what Apply would return, when ch's transaction is durable (or
// failed). done runs in a goroutine of the store and must not block or
// call the store's methods; it may run before ApplyAsync returns (a
// change invalid on its own, a closed store, a done ctx). Close waits
// until every done has returned. A caller with many changes in flight
// (the AuthStore actor) spends no goroutine per change.
func (s *BadgerStore) ApplyAsync(ctx context.Context, ch Change, done func(error)) {
	if err := ctx.Err(); err != nil {
		done(err)
		return
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		done(messages.ErrClosed)
		return
	}
	r, err := newApplyReq(ctx, ch)
	if err != nil {
		s.mu.RUnlock()
		done(wrapDBError("apply", err))
		return
	}
	r.notify = func(err error) {
		if err != nil {
			err = wrapDBError("apply", err)
		}
		done(err)
		s.mu.RUnlock() // taken above: Close waits for this answer
	}
	s.commit.enqueue(r)
}

// Close stops the store's committer, closes the database and stops
// badger's goroutines, waiting for in-flight Load, LoadPages and Apply
// calls. Later calls return messages.ErrClosed. Close is idempotent:
// later calls return nil.
func (s *BadgerStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.commit.stop()
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
	case errors.As(err, &de), errors.Is(err, ErrUnknownAccount), errors.Is(err, ErrInvalidChange),
		errors.Is(err, ErrStoreFull), errors.Is(err, ErrStoreUnavailable):
		return err
	case errors.Is(err, badger.ErrDBClosed):
		return messages.ErrClosed
	}
	return fmt.Errorf("pigeon/persistence: %s: %w", op, err)
}
