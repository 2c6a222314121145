package actors

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// openBadgerT opens a badger store in dir; the test closes it.
func openBadgerT(t *testing.T, dir string) *persistence.BadgerStore {
	t.Helper()
	s, err := persistence.OpenBadger(dir, persistence.WithoutEncryption())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badgerAuthStore spawns an AuthStore over a new badger store in dir.
func badgerAuthStore(t *testing.T) (*actor.ActorSystem, string, *persistence.BadgerStore, *actor.PID) {
	t.Helper()
	sys := newTestSystem(t)
	dir := filepath.Join(t.TempDir(), "db")
	store := openBadgerT(t, dir)
	return sys, dir, store, sys.Root.Spawn(NewAuthStoreProps(store))
}

// reload closes the actor pid and store, reopens dir and returns its state.
func reload(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, store persistence.Store, dir string) persistence.State {
	t.Helper()
	if err := StopAndWait(authCtx(t), sys, pid); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	s := openBadgerT(t, dir)
	defer s.Close()
	st, err := s.Load(authCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func recordsByUID(st persistence.State) map[string]messages.AuthRecord {
	m := make(map[string]messages.AuthRecord, len(st.Records))
	for _, r := range st.Records {
		m[r.UID] = r
	}
	return m
}

// collector is an actor that receives the replies to one request; count
// asks it how many it got so far.
type collector struct {
	pid     *actor.PID
	replies chan any
}

type countReplies struct{}

func newCollector(t *testing.T, sys *actor.ActorSystem) *collector {
	t.Helper()
	c := &collector{replies: make(chan any, 4)}
	var n atomic.Int32
	c.pid = sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case countReplies:
			ctx.Respond(int(n.Load()))
		case actor.SystemMessage, actor.AutoReceiveMessage:
		default:
			n.Add(1)
			c.replies <- ctx.Message()
		}
	}))
	t.Cleanup(func() { sys.Root.Stop(c.pid) })
	return c
}

// sendInOrder sends msgs to pid one after another without waiting (so
// they reach its mailbox in this order) and returns a collector for each.
func sendInOrder(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, msgs ...any) []*collector {
	t.Helper()
	cs := make([]*collector, len(msgs))
	for i := range msgs {
		cs[i] = newCollector(t, sys)
	}
	for i, m := range msgs {
		sys.Root.RequestWithCustomSender(pid, m, cs[i].pid)
	}
	return cs
}

// first waits for c's first reply.
func (c *collector) first(t *testing.T) any {
	t.Helper()
	select {
	case r := <-c.replies:
		return r
	case <-authCtx(t).Done():
		t.Fatal("no reply")
		return nil
	}
}

func rec(uid, token string) messages.AuthRecord {
	return messages.AuthRecord{UID: uid, AccessToken: messages.Secret(token), RefreshToken: "r-" + messages.Secret(uid)}
}

// Many callers save and refresh different accounts at once: every change
// is acknowledged, and every acknowledged change is on disk after reopen.
func TestAuthStoreBatch_ConcurrentWritesAllDurable(t *testing.T) {
	sys, dir, store, pid := badgerAuthStore(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := fmt.Sprintf("u%03d", i)
			ctx := authCtx(t)
			s, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SaveAuth{Record: rec(uid, "a1-"+uid)})
			if err != nil {
				errs <- err
				return
			}
			_, err = AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: uid, Generation: s.Snapshot.Generation, AccessToken: messages.Secret("a2-" + uid)})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := recordsByUID(reload(t, sys, pid, store, dir))
	if len(got) != n {
		t.Fatalf("reopened store has %d accounts, want %d", len(got), n)
	}
	for i := range n {
		uid := fmt.Sprintf("u%03d", i)
		if tok := string(got[uid].AccessToken); tok != "a2-"+uid {
			t.Errorf("%s: access token %q after reopen, want the refreshed one", uid, tok)
		}
	}
}

// Writes to one UID sent back to back are applied in send order, even
// with writes to other UIDs in between: the last one wins on disk, and
// each acknowledgement carries its own request's token.
func TestAuthStoreBatch_SameUIDInSendOrder(t *testing.T) {
	sys, dir, store, pid := badgerAuthStore(t)
	const n = 60
	var msgs []any
	for i := range n {
		msgs = append(msgs, &messages.SaveAuth{Record: rec("alice", fmt.Sprintf("t%02d", i))})
		msgs = append(msgs, &messages.SaveAuth{Record: rec(fmt.Sprintf("other%02d", i), "x")})
	}
	cs := sendInOrder(t, sys, pid, msgs...)
	for i, c := range cs {
		r, ok := c.first(t).(*messages.SavedAuth)
		if !ok {
			t.Fatalf("request %d: reply %T", i, r)
		}
		want := msgs[i].(*messages.SaveAuth).Record.AccessToken
		if r.Snapshot.AccessToken != want {
			t.Fatalf("request %d acknowledged with token %q, want %q", i, r.Snapshot.AccessToken, want)
		}
	}
	got := recordsByUID(reload(t, sys, pid, store, dir))
	if tok := got["alice"].AccessToken; tok != messages.Secret(fmt.Sprintf("t%02d", n-1)) {
		t.Fatalf("alice after reopen has %q, want the last one sent", tok)
	}
	if len(got) != n+1 {
		t.Fatalf("reopened store has %d accounts, want %d", len(got), n+1)
	}
}

// A SwitchAccount, a removal of the current account, a LogOut and saves
// with MakeCurrent, sent at once among plain saves, take effect in send
// order: "current" in the actor and on disk is the one that order gives.
func TestAuthStoreBatch_CurrentStaysConsistent(t *testing.T) {
	sys, dir, store, pid := badgerAuthStore(t)
	for _, uid := range []string{"a", "b", "c"} {
		save(t, sys, pid, uid) // c is current
	}
	msgs := []any{
		&messages.SaveAuth{Record: rec("p1", "x")},
		&messages.SwitchAccount{UID: "a"},
		&messages.SaveAuth{Record: rec("p2", "x")},
		&messages.RemoveAccount{UID: "a"}, // the current one: none is current
		&messages.SaveAuth{Record: rec("d", "x"), MakeCurrent: true},
		&messages.SaveAuth{Record: rec("p3", "x")},
		&messages.LogOut{}, // removes d
		&messages.SwitchAccount{UID: "b"},
		&messages.SaveAuth{Record: rec("b", "b2")},
	}
	cs := sendInOrder(t, sys, pid, msgs...)
	for i, c := range cs {
		if f, ok := c.first(t).(*messages.Failure); ok {
			t.Fatalf("request %d (%T) failed: %v", i, msgs[i], f.Err)
		}
	}
	cur, err := AskAs[*messages.CurrentAuth](authCtx(t), sys, pid, &messages.GetCurrentAuth{})
	if err != nil || cur.Record.UID != "b" || cur.Record.AccessToken != "b2" {
		t.Fatalf("current = %+v, %v; want b with b2", cur, err)
	}
	st := reload(t, sys, pid, store, dir)
	got := recordsByUID(st)
	if st.Current != "b" {
		t.Fatalf("current after reopen = %q, want b", st.Current)
	}
	for _, uid := range []string{"a", "d"} {
		if _, ok := got[uid]; ok {
			t.Errorf("%s is stored after its removal", uid)
		}
	}
	for _, uid := range []string{"b", "c", "p1", "p2", "p3"} {
		if _, ok := got[uid]; !ok {
			t.Errorf("%s is missing after reopen", uid)
		}
	}
}

// failingStore is a real store whose Apply fails for changes that put the
// UID bad, and, while gate is set, waits for it to close and then fails
// without writing (a write lost in a crash).
type failingStore struct {
	*persistence.BadgerStore
	bad     string
	gate    chan struct{}
	entered chan struct{}
}

func (s *failingStore) Apply(ctx context.Context, ch persistence.Change) error {
	for _, r := range ch.Put {
		if r.UID == s.bad {
			return errors.New("disk says no to " + s.bad)
		}
	}
	if s.gate != nil {
		s.entered <- struct{}{}
		<-s.gate
		return errors.New("not written")
	}
	return s.BadgerStore.Apply(ctx, ch)
}

// A write that the store rejects fails that request only: the writes in
// flight with it are acknowledged and durable.
func TestAuthStoreBatch_WriteFailureFailsOnlyThatRequest(t *testing.T) {
	sys := newTestSystem(t)
	dir := filepath.Join(t.TempDir(), "db")
	store := &failingStore{BadgerStore: openBadgerT(t, dir), bad: "bad"}
	pid := sys.Root.Spawn(NewAuthStoreProps(store))
	var msgs []any
	for i := range 40 {
		msgs = append(msgs, &messages.SaveAuth{Record: rec(fmt.Sprintf("g%02d", i), "x")})
		if i == 20 {
			msgs = append(msgs, &messages.SaveAuth{Record: rec("bad", "x")})
		}
	}
	cs := sendInOrder(t, sys, pid, msgs...)
	for i, c := range cs {
		r := c.first(t)
		f, failed := r.(*messages.Failure)
		isBad := msgs[i].(*messages.SaveAuth).Record.UID == "bad"
		if failed != isBad {
			t.Fatalf("request %d (%s): reply %T %v", i, msgs[i].(*messages.SaveAuth).Record.UID, r, f)
		}
		if isBad && !strings.Contains(f.Err.Error(), "disk says no") {
			t.Fatalf("failure does not say why: %v", f.Err)
		}
	}
	got := recordsByUID(reload(t, sys, pid, store, dir))
	if _, ok := got["bad"]; ok || len(got) != 40 {
		t.Fatalf("reopened store has %d accounts (bad stored: %v), want the 40 good ones", len(got), ok)
	}
}

// A restart while writes are in flight fails each of them once; the
// changes acknowledged before it are what a reload shows.
func TestAuthStoreBatch_RestartMidBatchFailsInFlightOnce(t *testing.T) {
	sys := newTestSystem(t)
	dir := filepath.Join(t.TempDir(), "db")
	store := &failingStore{BadgerStore: openBadgerT(t, dir)}
	pid := sys.Root.Spawn(NewAuthStoreProps(store))
	for i := range 5 {
		if _, err := AskAs[*messages.SavedAuth](authCtx(t), sys, pid, &messages.SaveAuth{Record: rec(fmt.Sprintf("acked%d", i), "x")}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 8
	store.gate, store.entered = make(chan struct{}), make(chan struct{}, n)
	var msgs []any
	for i := range n {
		msgs = append(msgs, &messages.SaveAuth{Record: rec(fmt.Sprintf("lost%d", i), "x")})
	}
	cs := sendInOrder(t, sys, pid, msgs...)
	for range n { // all n are in flight at once
		<-store.entered
	}
	// The restart is a system message, handled before the results that
	// opening the gate sends: every write is still in flight then.
	proc, _ := sys.ProcessRegistry.Get(pid)
	proc.SendSystemMessage(pid, &actor.Restart{})
	close(store.gate)
	for i, c := range cs {
		f, ok := c.first(t).(*messages.Failure)
		if !ok || !strings.Contains(f.Err.Error(), "restarted") {
			t.Fatalf("in-flight request %d: reply %+v, want a restart failure", i, f)
		}
	}
	store.gate = nil
	list, err := AskAs[*messages.AuthList](authCtx(t), sys, pid, &messages.ListAuths{})
	if err != nil || len(list.Records) != 5 {
		t.Fatalf("after restart list = %+v, %v; want the 5 acknowledged", list, err)
	}
	for i, c := range cs {
		if got, err := AskAs[int](authCtx(t), sys, c.pid, countReplies{}); err != nil || got != 1 {
			t.Fatalf("request %d got %d replies (%v), want 1", i, got, err)
		}
	}
	if got := recordsByUID(reload(t, sys, pid, store, dir)); len(got) != 5 {
		t.Fatalf("reopened store has %d accounts, want the 5 acknowledged", len(got))
	}
}

// pageCounter counts the pages its badger store's LoadPages hands out.
type pageCounter struct {
	*persistence.BadgerStore
	pages atomic.Int32
}

func (s *pageCounter) LoadPages(ctx context.Context, size int, page func([]messages.AuthRecord) error) (string, error) {
	return s.BadgerStore.LoadPages(ctx, size, func(p []messages.AuthRecord) error {
		s.pages.Add(1)
		return page(p)
	})
}

// Start-up over 20,000 accounts loads them in pages, one message each;
// requests sent during the load are answered after the last page, with
// every account there.
func TestAuthStoreBatch_PagedStartup(t *testing.T) {
	sys := newTestSystem(t)
	dir := filepath.Join(t.TempDir(), "db")
	bs := openBadgerT(t, dir)
	const n = 20000
	for i := 0; i < n; i += 500 {
		var ch persistence.Change
		for j := i; j < i+500; j++ {
			ch.Put = append(ch.Put, rec(fmt.Sprintf("u%05d", j), "x"))
		}
		if i == 0 {
			cur := "u00000"
			ch.SetCurrent = &cur
		}
		if err := bs.Apply(authCtx(t), ch); err != nil {
			t.Fatal(err)
		}
	}
	store := &pageCounter{BadgerStore: bs}
	defer store.Close()
	pid := spawnStore(t, sys, store, &TokenView{})
	cs := sendInOrder(t, sys, pid, &messages.ListAuths{}, &messages.GetAuth{UID: fmt.Sprintf("u%05d", n-1)}, &messages.GetCurrentAuth{})
	list, ok := cs[0].first(t).(*messages.AuthList)
	if !ok || len(list.Records) != n || list.Current != "u00000" {
		t.Fatalf("list during load: %d records, current %q (ok %v); want %d, u00000", len(list.Records), list.Current, ok, n)
	}
	if r, ok := cs[1].first(t).(*messages.CurrentAuth); !ok || r.Record.UID != fmt.Sprintf("u%05d", n-1) {
		t.Fatalf("GetAuth of the last account: %+v", r)
	}
	if r, ok := cs[2].first(t).(*messages.CurrentAuth); !ok || r.Record.UID != "u00000" {
		t.Fatalf("GetCurrentAuth: %+v", r)
	}
	if p := store.pages.Load(); p < n/loadPageSize {
		t.Fatalf("loaded in %d pages, want at least %d", p, n/loadPageSize)
	}
}

// brokenLoad's LoadPages hands out its store's first page, then fails.
type brokenLoad struct{ *persistence.BadgerStore }

func (s brokenLoad) LoadPages(ctx context.Context, size int, page func([]messages.AuthRecord) error) (string, error) {
	first := true
	_, err := s.BadgerStore.LoadPages(ctx, size, func(p []messages.AuthRecord) error {
		if !first {
			return errors.New("disk read failed")
		}
		first = false
		return page(p)
	})
	return "", err
}

// A load that fails after its first page fails the requests that waited
// for it, and later ones, with an error that says so; the page already
// installed is not served as if it were the whole state.
func TestAuthStoreBatch_LoadErrorFailsWaitingRequests(t *testing.T) {
	sys := newTestSystem(t)
	bs := openBadgerT(t, filepath.Join(t.TempDir(), "db"))
	defer bs.Close()
	var ch persistence.Change
	for i := range 2 * loadPageSize {
		ch.Put = append(ch.Put, rec(fmt.Sprintf("u%05d", i), "x"))
	}
	if err := bs.Apply(authCtx(t), ch); err != nil {
		t.Fatal(err)
	}
	pid := spawnStore(t, sys, brokenLoad{bs}, &TokenView{})
	cs := sendInOrder(t, sys, pid, &messages.ListAuths{}, &messages.GetAuth{UID: "u00000"})
	for i, c := range cs {
		f, ok := c.first(t).(*messages.Failure)
		if !ok || !strings.Contains(f.Err.Error(), "loading auth store") || !strings.Contains(f.Err.Error(), "disk read failed") {
			t.Fatalf("request %d during a failed load: %+v", i, f)
		}
	}
	_, err := AskAs[*messages.SavedAuth](authCtx(t), sys, pid, &messages.SaveAuth{Record: rec("new", "x")})
	if err == nil || !strings.Contains(err.Error(), "loading auth store") {
		t.Fatalf("save after a failed load: %v", err)
	}
}
