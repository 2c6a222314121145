package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// viewStore is an AuthStore over a memory store publishing into view.
type viewStore struct {
	sys  *actor.ActorSystem
	view *TokenView
	pid  *actor.PID
}

// newViewStore starts an AuthStore over store (a new memory store when
// nil) with WithView; both stop at cleanup.
func newViewStore(t *testing.T, store persistence.Store, opts ...AuthStoreOption) viewStore {
	t.Helper()
	if store == nil {
		store = persistence.NewMemory()
	}
	t.Cleanup(func() { _ = store.Close() })
	v := viewStore{sys: newTestSystem(t), view: &TokenView{}}
	v.pid = v.sys.Root.Spawn(NewAuthStoreProps(store, append([]AuthStoreOption{WithView(v.view)}, opts...)...))
	t.Cleanup(func() { _ = StopAndWait(context.Background(), v.sys, v.pid) })
	return v
}

func saveAs(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, rec messages.AuthRecord, current bool) messages.TokenSnapshot {
	t.Helper()
	s, err := AskAs[*messages.SavedAuth](authCtx(t), sys, pid, &messages.SaveAuth{Record: rec, MakeCurrent: current})
	if err != nil {
		t.Fatal(err)
	}
	return s.Snapshot
}

// WithView publishes every account, not only the current one: saves,
// token updates and removals reach TokenView.Account before the reply;
// RemoveAccount's reply says whether the account was current.
func TestTokenView_PublishesEveryAccount(t *testing.T) {
	vs := newViewStore(t, nil)
	sys, view, pid := vs.sys, vs.view, vs.pid
	ctx := authCtx(t)
	a := saveAs(t, sys, pid, messages.AuthRecord{UID: "a", AccessToken: "a1", RefreshToken: "ra"}, true)
	saveAs(t, sys, pid, messages.AuthRecord{UID: "b", AccessToken: "b1", RefreshToken: "rb"}, false)
	if cur := view.Current(); cur == nil || cur.UID != "a" {
		t.Fatalf("current %+v, want a", cur)
	}
	if s := view.Account("b"); s == nil || s.AccessToken != "b1" {
		t.Fatalf("b's snapshot %+v", s)
	}
	if _, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "a", Generation: a.Generation, AccessToken: "a2"}); err != nil {
		t.Fatal(err)
	}
	if s := view.Account("a"); s.AccessToken != "a2" || s.Version != a.Version+1 {
		t.Fatalf("a's snapshot after UpdateTokens %+v", s)
	}
	if view.Current().AccessToken != "a2" {
		t.Fatal("current snapshot not updated")
	}
	r, err := AskAs[*messages.LoggedOut](ctx, sys, pid, &messages.RemoveAccount{UID: "b"})
	if err != nil || r.WasCurrent {
		t.Fatalf("remove b: %+v, %v; want WasCurrent false", r, err)
	}
	if view.Account("b") != nil {
		t.Fatal("b still published after its removal")
	}
	r, err = AskAs[*messages.LoggedOut](ctx, sys, pid, &messages.RemoveAccount{UID: "a"})
	if err != nil || !r.WasCurrent {
		t.Fatalf("remove a: %+v, %v; want WasCurrent true", r, err)
	}
	if view.Account("a") != nil || view.Current() != nil {
		t.Fatal("a still published after its removal")
	}
}

// Every stored account is published at load, each into its own entry.
func TestTokenView_LoadPublishesAll(t *testing.T) {
	store := persistence.NewMemory()
	const n = 10_000
	recs := make([]messages.AuthRecord, n)
	for i := range recs {
		recs[i] = messages.AuthRecord{UID: fmt.Sprintf("u%05d", i), AccessToken: messages.Secret(fmt.Sprintf("t%05d", i))}
	}
	cur := "u00042"
	if err := store.Apply(context.Background(), persistence.Change{Put: recs, SetCurrent: &cur}); err != nil {
		t.Fatal(err)
	}
	vs := newViewStore(t, store)
	view := vs.view
	if _, err := AskAs[*messages.AuthList](authCtx(t), vs.sys, vs.pid, &messages.ListAuths{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if s := view.Account(r.UID); s == nil || s.AccessToken != r.AccessToken {
			t.Fatalf("%s published as %+v", r.UID, s)
		}
	}
	if view.Current().UID != cur {
		t.Fatalf("current %q", view.Current().UID)
	}
}

// perUIDRefresher counts refresh calls per account and holds each until
// release is closed; called receives the uid of each call.
type perUIDRefresher struct {
	mu      sync.Mutex
	calls   map[string]int
	called  chan string
	release chan struct{}
	exp     time.Time
}

func (r *perUIDRefresher) refresh(ctx context.Context, uid string, rt messages.Secret) (messages.RefreshedTokens, error) {
	r.mu.Lock()
	r.calls[uid]++
	r.mu.Unlock()
	r.called <- uid
	select {
	case <-r.release:
	case <-ctx.Done():
		return messages.RefreshedTokens{}, ctx.Err()
	}
	return messages.RefreshedTokens{AccessToken: "new-" + messages.Secret(uid), ExpiresAt: r.exp}, nil
}

func (r *perUIDRefresher) count(uid string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[uid]
}

// TokenClient serves any account: bound (UID) or from the context. Each
// account has its own refresh-ahead hint (one background refresh per
// account however many requests see it), a request of a non-current
// account inside its hard window waits for that account's refresh
// (AcquireToken with its UID), and an unknown UID is ErrUnknownAccount.
func TestTokenClient_PerAccount(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	vs := newViewStore(t, nil, WithAuthStoreClock(clock))
	sys, view, spid := vs.sys, vs.view, vs.pid
	rf := &perUIDRefresher{calls: map[string]int{}, called: make(chan string, 10), release: make(chan struct{}), exp: now.Add(time.Hour)}
	cpid := sys.Root.Spawn(NewRefreshCoordinatorProps(spid, view, rf.refresh, WithRefreshClock(clock)))
	t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, cpid) })
	ctx := authCtx(t)
	issued := now.Add(-time.Hour)
	// a: inside its refresh-ahead window (30s left); b: inside its hard
	// window (5s left); c: current, far from expiry.
	saveAs(t, sys, spid, messages.AuthRecord{UID: "a", AccessToken: "a1", RefreshToken: "ra", IssuedAt: issued, ExpiresAt: now.Add(30 * time.Second)}, false)
	saveAs(t, sys, spid, messages.AuthRecord{UID: "b", AccessToken: "b1", RefreshToken: "rb", IssuedAt: issued, ExpiresAt: now.Add(5 * time.Second)}, false)
	saveAs(t, sys, spid, messages.AuthRecord{UID: "c", AccessToken: "c1", RefreshToken: "rc", IssuedAt: issued, ExpiresAt: now.Add(time.Hour)}, true)
	base := TokenClient{System: sys, Coordinator: cpid, View: view, Now: clock}
	bound := base
	bound.UID = "a"
	for range 10 {
		s, err := bound.Token(ctx)
		if err != nil || s.UID != "a" || s.AccessToken != "a1" {
			t.Fatalf("bound token %+v, %v; want a's still-valid token", s, err)
		}
		s, err = base.Token(messages.ContextWithAccount(ctx, "a"))
		if err != nil || s.UID != "a" {
			t.Fatalf("context token %+v, %v", s, err)
		}
	}
	if uid := <-rf.called; uid != "a" {
		t.Fatalf("refresh of %q, want a's background refresh", uid)
	}
	// b inside its hard window waits for its own refresh, while c is current.
	got := make(chan *messages.TokenSnapshot, 1)
	go func() {
		s, err := base.Token(messages.ContextWithAccount(ctx, "b"))
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	if uid := <-rf.called; uid != "b" {
		t.Fatalf("refresh of %q, want b's", uid)
	}
	if s, err := base.Token(ctx); err != nil || s.UID != "c" || s.AccessToken != "c1" {
		t.Fatalf("current token %+v, %v; want c's, not waiting", s, err)
	}
	if _, err := base.Token(messages.ContextWithAccount(ctx, "nobody")); !errors.Is(err, messages.ErrUnknownAccount) {
		t.Fatalf("unknown account: %v, want ErrUnknownAccount", err)
	}
	if _, err := AskAs[*messages.TokenGrant](ctx, sys, cpid, &messages.AcquireToken{UID: "nobody"}); !errors.Is(err, messages.ErrUnknownAccount) {
		t.Fatalf("AcquireToken of an unknown account: %v, want ErrUnknownAccount", err)
	}
	close(rf.release)
	if s := <-got; s == nil || s.UID != "b" || s.AccessToken != "new-b" {
		t.Fatalf("b's waiter got %+v, want b's new token", s)
	}
	// a's background refresh is over once a 401 of its old token is
	// answered (queued behind the flight, or replayed after it).
	g, err := AskAs[*messages.TokenGrant](ctx, sys, cpid, &messages.ReportUnauthorized{UID: "a", Generation: view.Account("a").Generation, Version: 1})
	if err != nil || g.Snapshot.AccessToken != "new-a" {
		t.Fatalf("a after its refresh: %+v, %v", g, err)
	}
	for _, uid := range []string{"a", "b", "c"} {
		want := 1
		if uid == "c" {
			want = 0
		}
		if n := rf.count(uid); n != want {
			t.Errorf("%s: %d refresh calls, want %d", uid, n, want)
		}
	}
	if view.Current().AccessToken != "c1" {
		t.Fatal("the current account's token changed")
	}
}

// SubscribeAccounts and SubscribeAuth with a UID: one value per session
// start and end; none for a token update or a switch; a UID's stream
// starts with its state.
func TestAuthStore_AccountStreams(t *testing.T) {
	vs := newViewStore(t, nil)
	sys, pid := vs.sys, vs.pid
	ctx := authCtx(t)
	all, err := AskAs[*messages.AccountsSubscription](ctx, sys, pid, &messages.SubscribeAccounts{Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	one, err := AskAs[*messages.AuthSubscription](ctx, sys, pid, &messages.SubscribeAuth{UID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st := <-one.C; st != (messages.AuthStatus{State: messages.Unauthenticated, UID: "a"}) {
		t.Fatalf("a's first status %+v", st)
	}
	a := saveAs(t, sys, pid, messages.AuthRecord{UID: "a", AccessToken: "a1"}, false)
	saveAs(t, sys, pid, messages.AuthRecord{UID: "b", AccessToken: "b1"}, true)
	if _, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "a", Generation: a.Generation, AccessToken: "a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SwitchAccount{UID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := AskAs[*messages.SessionEnded](ctx, sys, pid, &messages.EndSession{UID: "a", Generation: a.Generation, Reason: messages.EndExpired}); err != nil {
		t.Fatal(err)
	}
	// Buffer 2, three values: the oldest ({a, Authenticated}) was dropped.
	for i, w := range []messages.AccountStatus{{UID: "b", State: messages.Authenticated}, {UID: "a", State: messages.Unauthenticated}} {
		if st := <-all.C; st != w {
			t.Fatalf("all-accounts value %d: %+v, want %+v", i, st, w)
		}
	}
	for i, w := range []messages.AuthState{messages.Authenticated, messages.Unauthenticated} {
		if st := <-one.C; st != (messages.AuthStatus{State: w, UID: "a"}) {
			t.Fatalf("a's value %d: %+v, want %v", i, st, w)
		}
	}
	for _, id := range []uint64{all.ID, one.ID} {
		if _, err := AskAs[*messages.Unsubscribed](ctx, sys, pid, &messages.UnsubscribeAuth{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := <-all.C; ok {
		t.Fatal("all-accounts stream open after UnsubscribeAuth")
	}
	if _, ok := <-one.C; ok {
		t.Fatal("a's stream open after UnsubscribeAuth")
	}
	if _, err := AskAs[*messages.AuthSubscription](ctx, sys, pid, &messages.SubscribeAuth{UID: "a", PID: pid}); err == nil {
		t.Fatal("SubscribeAuth with a UID and a PID was accepted")
	}
}
