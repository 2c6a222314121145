package persistence

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/apppigeon/pigeon/messages"
)

// countCommits makes s count its commits (before any Apply).
func countCommits(s *BadgerStore) *atomic.Int64 {
	var n atomic.Int64
	s.commit.commit = func(txn *badger.Txn) error {
		n.Add(1)
		return txn.Commit()
	}
	return &n
}

// req is a queued Apply of ch for commitBatch (ctx: Background, or a
// canceled one when canceled).
func req(t *testing.T, ch Change, canceled bool) *applyReq {
	t.Helper()
	ctx := context.Background()
	if canceled {
		c, cancel := context.WithCancel(ctx)
		cancel()
		ctx = c
	}
	r, err := newApplyReq(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// answers returns what commitBatch answered each request.
func answers(reqs []*applyReq) []error {
	out := make([]error, len(reqs))
	for i, r := range reqs {
		out[i] = <-r.done
	}
	return out
}

// TestGroupCommit_Batch: requests committed in one transaction behave as
// the same Applies one after another: each is validated against those
// before it, one that fails against the state fails alone and writes
// nothing (a change invalid on its own is refused before it is queued), the later of
// two Puts of one UID wins. The store's committer is idle (no Apply
// runs), so commitBatch is called directly with a batch of our making.
func TestGroupCommit_Batch(t *testing.T) {
	a1, a2, b1, c1 := rec("alice", 1), rec("alice", 2), rec("bob", 1), rec("carol", 1)
	type step struct {
		ch       Change
		canceled bool
		wantErr  error
	}
	cases := []struct {
		name  string
		setup Change
		batch []step
		want  State
	}{
		{name: "later put of a UID wins",
			batch: []step{{ch: Change{Put: []messages.AuthRecord{a1}}}, {ch: Change{Put: []messages.AuthRecord{a2}}}},
			want:  State{Records: []messages.AuthRecord{a2}}},
		{name: "set current to an account put earlier in the batch",
			batch: []step{{ch: Change{Put: []messages.AuthRecord{c1}}}, {ch: Change{SetCurrent: strp("carol")}}},
			want:  State{Records: []messages.AuthRecord{c1}, Current: "carol"}},
		{name: "set current to an account deleted earlier in the batch fails alone",
			setup: Change{Put: []messages.AuthRecord{a1, b1}, SetCurrent: strp("alice")},
			batch: []step{
				{ch: Change{Delete: []string{"bob"}}},
				{ch: Change{Put: []messages.AuthRecord{c1}, SetCurrent: strp("bob")}, wantErr: ErrUnknownAccount},
				{ch: Change{Put: []messages.AuthRecord{a2}}},
			},
			want: State{Records: []messages.AuthRecord{a2}, Current: "alice"}},
		{name: "deleting the current account put earlier clears it",
			batch: []step{{ch: Change{Put: []messages.AuthRecord{b1}, SetCurrent: strp("bob")}}, {ch: Change{Delete: []string{"bob"}}}},
			want:  State{}},
		{name: "a canceled request writes nothing",
			batch: []step{
				{ch: Change{Put: []messages.AuthRecord{c1}}, canceled: true, wantErr: context.Canceled},
				{ch: Change{Put: []messages.AuthRecord{b1}}},
			},
			want: State{Records: []messages.AuthRecord{b1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openBadger(t, filepath.Join(t.TempDir(), "store"), WithEncryptionKey(testKey))
			mustApply(t, s, tc.setup)
			commits := countCommits(s)
			var reqs []*applyReq
			for _, st := range tc.batch {
				reqs = append(reqs, req(t, st.ch, st.canceled))
			}
			if n := s.commit.commitBatch(reqs); n != len(reqs) {
				t.Fatalf("commitBatch took %d of %d requests", n, len(reqs))
			}
			for i, err := range answers(reqs) {
				if !errors.Is(err, tc.batch[i].wantErr) {
					t.Errorf("request %d: %v, want %v", i, err, tc.batch[i].wantErr)
				}
			}
			if n := commits.Load(); n != 1 {
				t.Errorf("%d commits, want 1", n)
			}
			if d := diffState(mustLoad(t, s), tc.want); d != "" {
				t.Errorf("state:\n%s", d)
			}
		})
	}
}

// TestGroupCommit_SplitsAtTransactionLimit: a batch larger than one badger
// transaction is committed as several, each request whole in one, in
// order; a change too large for any transaction fails alone.
func TestGroupCommit_SplitsAtTransactionLimit(t *testing.T) {
	s := openBadger(t, filepath.Join(t.TempDir(), "store"), WithEncryptionKey(testKey))
	commits := countCommits(s)
	big := func(uid string, n int) messages.AuthRecord {
		r := rec(uid, n)
		r.Data = []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("x", 20_000))) // below the value threshold
		return r
	}
	var reqs []*applyReq
	var want []messages.AuthRecord
	for i := range 40 { // 40 changes of 2 x 20 KB: several transactions
		a, b := big(fmt.Sprintf("u%02d-a", i), i), big(fmt.Sprintf("u%02d-b", i), i)
		reqs = append(reqs, req(t, Change{Put: []messages.AuthRecord{a, b}}, false))
		want = append(want, a, b)
		if i == 20 { // too large for one transaction (badger's limit: 15% of the memtable)
			var huge []messages.AuthRecord
			for j := range 30 {
				huge = append(huge, big(fmt.Sprintf("huge-%02d", j), j))
			}
			reqs = append(reqs, req(t, Change{Put: huge}, false))
		}
	}
	for rest := reqs; len(rest) > 0; {
		n := s.commit.commitBatch(rest)
		if n < 1 {
			t.Fatalf("commitBatch took %d requests", n)
		}
		rest = rest[n:]
	}
	for i, err := range answers(reqs) {
		if i == 21 {
			if !errors.Is(err, badger.ErrTxnTooBig) {
				t.Errorf("the oversized change: %v, want badger.ErrTxnTooBig", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if n := commits.Load(); n < 3 || n > int64(len(reqs)/2) {
		t.Errorf("%d commits for %d requests of about 40 KB: not split, or not batched", n, len(reqs))
	}
	if d := diffState(mustLoad(t, s), State{Records: want}); d != "" {
		t.Errorf("state:\n%s", d)
	}
}

// TestGroupCommit_FailedCommitFailsBatch: when the commit of a batch
// fails, every request of the batch gets the error and none of it is
// written; what earlier batches committed stays, and the store goes on.
func TestGroupCommit_FailedCommitFailsBatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1)}, SetCurrent: strp("alice")})
	boom := errors.New("disk on fire")
	s.commit.commit = func(*badger.Txn) error { return boom }
	reqs := []*applyReq{
		req(t, Change{Put: []messages.AuthRecord{rec("alice", 2)}}, false),
		req(t, Change{Put: []messages.AuthRecord{rec("bob", 1)}, SetCurrent: strp("bob")}, false),
		req(t, Change{SetCurrent: strp("nobody")}, false), // would fail alone; fails with the batch
	}
	if n := s.commit.commitBatch(reqs); n != len(reqs) {
		t.Fatalf("commitBatch took %d of %d requests", n, len(reqs))
	}
	for i, err := range answers(reqs) {
		if !errors.Is(err, boom) {
			t.Errorf("request %d: %v, want the commit's error", i, err)
		}
	}
	s.commit.commit = (*badger.Txn).Commit
	want := State{Records: []messages.AuthRecord{rec("alice", 1)}, Current: "alice"}
	if d := diffState(mustLoad(t, s), want); d != "" {
		t.Errorf("after the failed commit:\n%s", d)
	}
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("bob", 2)}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want.Records = append(want.Records, rec("bob", 2))
	if d := diffState(mustLoad(t, openBadger(t, dir, WithEncryptionKey(testKey))), want); d != "" {
		t.Errorf("after reopen:\n%s", d)
	}
}

// TestStress_ConcurrentApplyShareCommit: Applies queued while a commit is
// syncing all go into the next transaction (one commit for all), and
// none returns before that commit has returned. The first commit is held
// (the writers start while it is) until every writer has queued its Apply.
func TestStress_ConcurrentApplyShareCommit(t *testing.T) {
	const writers = 200
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	release := make(chan struct{})
	s.commit.onQueue = func(queued int) {
		if queued == writers {
			close(release)
		}
	}
	holding := make(chan struct{})
	var commits, returned atomic.Int64
	var returnedAtCommit []int64
	s.commit.commit = func(txn *badger.Txn) error {
		if commits.Add(1) == 1 {
			close(holding)
			<-release
		}
		returnedAtCommit = append(returnedAtCommit, returned.Load()) // only the committer goroutine appends
		return txn.Commit()
	}
	first := make(chan error, 1)
	go func() { first <- s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("first", 1)}}) }()
	<-holding
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	want := []messages.AuthRecord{rec("first", 1)}
	for w := range writers {
		r := rec(fmt.Sprintf("w%03d", w), w)
		want = append(want, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Apply(context.Background(), Change{Put: []messages.AuthRecord{r}})
			returned.Add(1)
			errs <- err
		}()
	}
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := commits.Load(); n != 2 {
		t.Errorf("%d commits for 1 + %d Applies, want 2", n, writers)
	}
	for i, n := range returnedAtCommit {
		if n != 0 {
			t.Errorf("commit %d: %d Applies had returned before it", i+1, n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := diffState(mustLoad(t, openBadger(t, dir, WithEncryptionKey(testKey))), State{Records: want}); d != "" {
		t.Errorf("after reopen:\n%s", d)
	}
}

// TestGroupCommit_PipelinedSync: while a transaction syncs, its callers
// wait, and the next batch is planned and staged but not committed (the
// guard readies the disk for one transaction at a time); once the sync
// returns, the first callers are answered and the next batch commits. A
// failed sync fails exactly the callers of its transaction.
func TestGroupCommit_PipelinedSync(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	commits := countCommits(s)
	syncing := make(chan struct{})
	release := make(chan error)
	after := s.commit.sync
	var syncs atomic.Int64
	s.commit.sync = func(wal int64, vlog bool) error {
		if syncs.Add(1) == 1 {
			close(syncing)
			if err := <-release; err != nil {
				return err
			}
		}
		return after(wal, vlog)
	}
	queued := make(chan int, 4)
	s.commit.onQueue = func(n int) { queued <- n }
	first := make(chan error, 1)
	go func() { first <- s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("alice", 1)}}) }()
	<-queued
	<-syncing // alice's transaction is committed, its sync held
	second := make(chan error, 1)
	go func() {
		second <- s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("bob", 1)}, SetCurrent: strp("alice")})
	}()
	<-queued
	select {
	case err := <-first:
		t.Fatalf("alice's Apply returned (%v) before its transaction was synced", err)
	case err := <-second:
		t.Fatalf("bob's Apply returned (%v) before alice's transaction was synced", err)
	default:
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("%d commits while the first transaction syncs, want 1", n)
	}
	boom := errors.New("boom: sync failed")
	release <- boom
	if err := <-first; !errors.Is(err, boom) {
		t.Errorf("alice's Apply after a failed sync: %v, want %v", err, boom)
	}
	// bob's change was planned against alice's committed record (SetCurrent
	// finds it) and goes into the next transaction, synced on its own.
	if err := <-second; err != nil {
		t.Errorf("bob's Apply: %v", err)
	}
	if n := commits.Load(); n != 2 {
		t.Errorf("%d commits, want 2", n)
	}
	if n := syncs.Load(); n != 2 {
		t.Errorf("%d syncs, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := State{Records: []messages.AuthRecord{rec("alice", 1), rec("bob", 1)}, Current: "alice"}
	if d := diffState(mustLoad(t, openBadger(t, dir, WithEncryptionKey(testKey))), want); d != "" {
		t.Errorf("after reopen:\n%s", d)
	}
}

// TestApplyAsync: ApplyAsync answers once, with what Apply would return,
// only after the change's transaction is durable (its sync is held until
// the test releases it); an invalid change and a closed store answer at
// once; Close waits for a change in flight.
func TestApplyAsync(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	syncing, release := make(chan struct{}), make(chan struct{})
	after := s.commit.sync
	var syncs atomic.Int64
	s.commit.sync = func(wal int64, vlog bool) error {
		if syncs.Add(1) == 1 {
			close(syncing)
			<-release
		}
		return after(wal, vlog)
	}
	answers := make(chan error, 2)
	s.ApplyAsync(context.Background(), Change{Put: []messages.AuthRecord{rec("alice", 1)}}, func(err error) { answers <- err })
	<-syncing
	select {
	case err := <-answers:
		t.Fatalf("answered (%v) before the sync", err)
	default:
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(release)
	if err := <-answers; err != nil {
		t.Fatalf("ApplyAsync: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s.ApplyAsync(context.Background(), Change{Put: []messages.AuthRecord{rec("bob", 1)}}, func(err error) { answers <- err })
	if err := <-answers; !errors.Is(err, messages.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	s = openBadger(t, dir, WithEncryptionKey(testKey))
	s.ApplyAsync(context.Background(), Change{Put: []messages.AuthRecord{{}}}, func(err error) { answers <- err })
	if err := <-answers; !errors.Is(err, ErrInvalidChange) {
		t.Errorf("empty UID: %v, want ErrInvalidChange", err)
	}
	s.ApplyAsync(context.Background(), Change{SetCurrent: strp("nobody")}, func(err error) { answers <- err })
	if err := <-answers; !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown current: %v, want ErrUnknownAccount", err)
	}
	if d := diffState(mustLoad(t, s), State{Records: []messages.AuthRecord{rec("alice", 1)}}); d != "" {
		t.Errorf("after reopen:\n%s", d)
	}
}
