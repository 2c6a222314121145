package persistence

import (
	"context"
	"slices"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// applyReq is one Apply waiting for the committer: its change prepared
// and its records encoded by the caller, so that the committer, which is
// serial, only checks the change against the state and writes it.
type applyReq struct {
	ctx    context.Context
	change prepared
	values [][]byte   // change.put encoded, in order
	err    error      // the answer, set by the committer
	done   chan error // capacity 1: the committer sends the answer once (Apply)
	// notify, when set (ApplyAsync), receives the answer instead of done,
	// in the committer's or its syncer's goroutine.
	notify func(error)
}

// answer hands r its answer err, once.
func (r *applyReq) answer(err error) {
	if r.notify != nil {
		r.notify(err)
		return
	}
	r.done <- err
}

// newApplyReq prepares ch and encodes its records. An error means ch is
// invalid on its own (ErrInvalidChange): nothing is queued.
func newApplyReq(ctx context.Context, ch Change) (*applyReq, error) {
	pr, err := prepare(ch)
	if err != nil {
		return nil, err
	}
	values := make([][]byte, len(pr.put))
	for i, r := range pr.put {
		if values[i], err = encodeRecord(r); err != nil {
			return nil, err
		}
	}
	return &applyReq{ctx: ctx, change: pr, values: values, done: make(chan error, 1)}, nil
}

// committer is a BadgerStore's group commit: a single goroutine that takes
// every Apply queued while the previous transaction was committing and
// applies them, in the order they were queued, in one badger transaction
// (one fsync of its log, spaceGuard.after, made by its syncer goroutine
// while the committer plans and stages the next batch). Each caller is
// answered only after that transaction is durable; when the commit fails, every caller
// in the batch gets the error and nothing of the batch is written (when
// only the sync after it fails, the callers get that error too, and the
// changes, which the disk did not confirm, may be read back until the
// store is reopened, as with badger's own SyncWrites). Changes
// acknowledged before are untouched: they were committed by earlier
// transactions.
//
// A request's plan is made inside the batch's transaction, so it sees the
// changes queued before it (a Put then a SetCurrent of the same UID, two
// Puts of one UID: the later wins), exactly as if the Applies had run one
// after another.
type committer struct {
	db *badger.DB
	// commit commits the batch's transaction (txn.Commit); a field so
	// tests can make a commit fail.
	commit func(*badger.Txn) error
	// sync makes a committed transaction durable (spaceGuard.after); a
	// field so tests can hold a sync.
	sync func(wal int64, vlog bool) error
	// maxSize and maxCount bound a batch below badger's transaction limits
	// (ErrTxnTooBig), estimated as badger does.
	maxSize, maxCount int64
	threshold         int64 // badger's value threshold (values at or above it go to the value log)
	// onQueue, when set (tests only, before the first Apply), is called
	// by apply after it queued its request, with the queue's length.
	onQueue func(queued int)
	// guard readies the disk before each transaction (see spaceGuard);
	// marker keeps the "holds accounts" marker beside the data.
	guard  *spaceGuard
	marker *marker

	mu    sync.Mutex
	queue []*applyReq   // queued, not yet taken by the committer
	wake  chan struct{} // capacity 1: the queue became non-empty (a stale token is harmless)
	quit  chan struct{} // closed by stop
	done  chan struct{} // closed when run returns

	// The sync of a committed transaction and the answers to its callers
	// run in the syncer goroutine (owned by run), so that the next batch
	// is planned and staged meanwhile. syncs hands it one committed
	// transaction at a time; free holds a token while no transaction is
	// committed but not yet synced: a commit takes it before the guard
	// readies the disk and the syncer puts it back after the sync, so the
	// guard is used by one goroutine at a time and the transactions are
	// committed and synced in order.
	syncs chan syncJob
	free  chan struct{} // capacity 1
}

// syncJob is a committed transaction for the syncer: its requests, to be
// answered once it is durable (their err set beforehand, for those that
// failed alone), and what spaceGuard.after and the marker need.
type syncJob struct {
	reqs     []*applyReq
	wal      int64
	vlog     bool
	nonEmpty bool
}

func newCommitter(db *badger.DB, valueThreshold int64, guard *spaceGuard, mk *marker) *committer {
	c := &committer{
		db:        db,
		guard:     guard,
		marker:    mk,
		commit:    (*badger.Txn).Commit,
		sync:      guard.after,
		maxSize:   db.MaxBatchSize(),
		maxCount:  db.MaxBatchCount(),
		threshold: valueThreshold,
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		syncs:     make(chan syncJob),
		free:      make(chan struct{}, 1),
	}
	c.free <- struct{}{}
	return c
}

// apply queues r and waits for the committer's answer. The caller holds
// the store's read lock, so stop cannot run until this returns.
func (c *committer) apply(r *applyReq) error {
	c.enqueue(r)
	return <-r.done
}

// enqueue queues r for the committer, which answers it once. The caller
// holds the store's read lock until the answer.
func (c *committer) enqueue(r *applyReq) {
	c.mu.Lock()
	c.queue = append(c.queue, r)
	queued := len(c.queue)
	c.mu.Unlock()
	if c.onQueue != nil {
		c.onQueue(queued)
	}
	if queued == 1 {
		select {
		case c.wake <- struct{}{}:
		default: // a token is already there
		}
	}
}

// start runs the committer goroutine; stop ends it.
func (c *committer) start() { go c.run() }

// stop ends the committer and waits for it. The store calls it from Close
// with its write lock held: no Apply is in flight, the queue is empty.
func (c *committer) stop() {
	close(c.quit)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	defer c.guard.close()
	synced := make(chan struct{})
	go c.syncer(synced)
	defer func() {
		close(c.syncs)
		<-synced
	}()
	var batch []*applyReq // taken from the queue, not yet answered
	for {
		if len(batch) == 0 {
			select {
			case <-c.wake:
			case <-c.quit:
				return
			}
		}
		c.mu.Lock()
		batch = append(batch, c.queue...)
		clear(c.queue)
		c.queue = c.queue[:0]
		c.mu.Unlock()
		n := c.commitBatch(batch)
		rest := copy(batch, batch[n:])
		clear(batch[rest:])
		batch = batch[:rest]
	}
}

// commitBatch commits the longest prefix of reqs that fits in one badger
// transaction, answers every request of that prefix and returns its length
// (at least 1 when reqs is not empty). Requests after it stay queued, in
// order, for the next transaction.
func (c *committer) commitBatch(reqs []*applyReq) int {
	limit := len(reqs)
	for {
		n, ok := c.tryBatch(reqs[:limit])
		if ok {
			return n
		}
		// Request n failed to write after others had: its partial writes
		// are in the transaction, which was discarded. Commit those before
		// it without it; it comes first in the next batch, alone.
		limit = n
	}
}

// tryBatch plans and writes reqs in order into one transaction until the
// next request would not fit, commits, answers the requests it took and
// returns how many (ok). If a request's writes fail after others were
// written, it discards everything, answers nobody and returns that
// request's index (not ok).
func (c *committer) tryBatch(reqs []*applyReq) (n int, ok bool) {
	txn := c.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	var size, count int64                        // badger's estimate of txn, as in Txn.checkSize
	wal, vlog := int64(txnMarkerBytes), int64(0) // the guard's estimate of txn's log and value log bytes
	deletes := false
	for n = 0; n < len(reqs); n++ {
		r := reqs[n]
		r.err = r.ctx.Err()
		if r.err != nil {
			continue
		}
		var es []entry
		es, r.err = entries(txn, r)
		if r.err != nil {
			continue
		}
		s, k := c.estimate(es)
		if count > 0 && (size+s >= c.maxSize || count+k >= c.maxCount) {
			break
		}
		if err := writeEntries(txn, es); err != nil {
			if count > 0 {
				return n, false
			}
			// Alone in the transaction: this request alone fails. Start
			// a clean transaction for the ones after it (the plans of those
			// before it failed and wrote nothing).
			r.err = err
			txn.Discard()
			txn = c.db.NewTransaction(true)
			continue
		}
		size, count = size+s, count+k
		wal += walEstimate(es, c.threshold)
		for _, e := range es {
			if v := int64(len(e.value)); v >= c.threshold {
				vlog += int64(len(e.key)) + v + walEntryOverhead
			}
			deletes = deletes || e.del
		}
	}
	if count == 0 {
		// Nothing to write: every request failed alone.
		for _, r := range reqs[:n] {
			r.answer(r.err)
		}
		return n, true
	}
	<-c.free // the transaction before is synced
	nonEmpty, err := c.commitGuarded(txn, wal, vlog, deletes)
	if err != nil {
		for _, r := range reqs[:n] {
			r.err = err
			r.answer(err)
		}
		c.free <- struct{}{}
		return n, true
	}
	c.syncs <- syncJob{reqs: slices.Clone(reqs[:n]), wal: wal, vlog: vlog > 0, nonEmpty: nonEmpty}
	return n, true
}

// syncer makes each committed transaction durable (spaceGuard.after),
// keeps the marker, answers the transaction's requests and frees the
// guard for the next commit, until syncs is closed; then it closes
// synced.
func (c *committer) syncer(synced chan<- struct{}) {
	defer close(synced)
	for j := range c.syncs {
		if err := c.sync(j.wal, j.vlog); err != nil {
			for _, r := range j.reqs {
				r.err = err
			}
		} else if j.nonEmpty {
			// The change is durable whatever happens to the marker: a
			// failure here is logged by nobody and retried on the next commit.
			_ = c.marker.set()
		}
		c.free <- struct{}{}
		for _, r := range j.reqs {
			r.answer(r.err)
		}
	}
}

// txnMarkerBytes is badger's log entry that ends a transaction.
const txnMarkerBytes = 128

// commitGuarded commits txn after the guard readied the disk for wal log
// bytes and vlog value log bytes, keeping the marker right: a
// transaction that may empty the store (deletes) removes the marker
// before it commits, when txn holds no record any more; a commit that
// leaves records (nonEmpty) has the syncer write it after the sync. So a
// crash never leaves a marker on a store that holds nothing. The caller
// holds the free token; on success the syncer makes txn durable
// (spaceGuard.after).
func (c *committer) commitGuarded(txn *badger.Txn, wal, vlog int64, deletes bool) (nonEmpty bool, err error) {
	if err := c.guard.before(wal, vlog); err != nil {
		return false, err
	}
	nonEmpty = true
	if deletes {
		nonEmpty = holdsRecords(txn)
		if !nonEmpty {
			if err := c.marker.clear(); err != nil {
				return false, err
			}
		}
	}
	if err := c.commit(txn); err != nil {
		return false, commitError(c.guard.dir, err)
	}
	return nonEmpty, nil
}

// entry is one badger write: a Set, or a Delete when del.
type entry struct {
	key, value []byte
	del        bool
}

// entries checks r's change against the state txn sees (the store plus
// the batch so far) and returns its writes.
func entries(txn *badger.Txn, r *applyReq) ([]entry, error) {
	p, err := r.change.resolve(badgerView{txn})
	if err != nil {
		return nil, err
	}
	es := make([]entry, 0, len(p.del)+len(p.put)+1)
	for _, uid := range p.del {
		es = append(es, entry{key: recKey(uid), del: true})
	}
	for i, rec := range p.put {
		es = append(es, entry{key: recKey(rec.UID), value: r.values[i]})
	}
	switch {
	case !p.setCurrent:
	case p.current == "":
		es = append(es, entry{key: []byte(currentKey), del: true})
	default:
		es = append(es, entry{key: []byte(currentKey), value: encodeCurrent(p.current)})
	}
	return es, nil
}

// estimate is badger's size and count estimate of es (Txn.checkSize,
// Entry.estimateSizeAndSetThreshold).
func (c *committer) estimate(es []entry) (size, count int64) {
	for _, e := range es {
		k, v := int64(len(e.key)), int64(len(e.value))
		if v < c.threshold {
			size += k + v + 2
		} else {
			size += k + 12 + 2
		}
		size += 10
	}
	return size, int64(len(es))
}

func writeEntries(txn *badger.Txn, es []entry) error {
	for _, e := range es {
		var err error
		if e.del {
			err = txn.Delete(e.key)
		} else {
			err = txn.Set(e.key, e.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
