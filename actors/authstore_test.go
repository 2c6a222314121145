package actors

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

func authCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func spawnStore(t *testing.T, sys *actor.ActorSystem, store persistence.Store, view *TokenView) *actor.PID {
	t.Helper()
	pid := sys.Root.Spawn(NewAuthStoreProps(store, WithSnapshot(view.Snapshot())))
	t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, pid) })
	return pid
}

func save(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, uid string) *messages.SavedAuth {
	t.Helper()
	s, err := AskAs[*messages.SavedAuth](authCtx(t), sys, pid, &messages.SaveAuth{
		Record: messages.AuthRecord{UID: uid, AccessToken: "a-" + messages.Secret(uid), RefreshToken: "r-" + messages.Secret(uid)}, MakeCurrent: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// After a supervisor restart the AuthStore reloads its state from the
// store: nothing acknowledged is lost, and a stale session stays stale.
func TestAuthStore_RestartReloadsFromStore(t *testing.T) {
	sys := newTestSystem(t)
	store := persistence.NewMemory()
	defer store.Close()
	view := &TokenView{}
	pid := spawnStore(t, sys, store, view)
	ctx := authCtx(t)
	first := save(t, sys, pid, "alice")
	save(t, sys, pid, "bob")

	proc, _ := sys.ProcessRegistry.Get(pid)
	proc.SendSystemMessage(pid, &actor.Restart{})

	cur, err := AskAs[*messages.CurrentAuth](ctx, sys, pid, &messages.GetCurrentAuth{})
	if err != nil || cur.Record.UID != "bob" {
		t.Fatalf("after restart current = %+v, %v", cur, err)
	}
	list, err := AskAs[*messages.AuthList](ctx, sys, pid, &messages.ListAuths{})
	if err != nil || len(list.Records) != 2 {
		t.Fatalf("after restart list = %+v, %v", list, err)
	}
	if v := view.Current(); v == nil || v.UID != "bob" {
		t.Fatalf("snapshot after restart = %+v", v)
	}
	// A refresh result of the session before the restart is not applied:
	// generations are unique across restarts.
	_, err = AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "alice", Generation: first.Snapshot.Generation, AccessToken: "new"})
	if !errors.Is(err, messages.ErrLoggedOut) {
		t.Fatalf("stale UpdateTokens after restart: %v", err)
	}
}

func TestAuthStore_UpdateTokensAndEndSession(t *testing.T) {
	sys := newTestSystem(t)
	store := persistence.NewMemory()
	defer store.Close()
	view := &TokenView{}
	pid := spawnStore(t, sys, store, view)
	ctx := authCtx(t)
	s := save(t, sys, pid, "alice")

	up, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "alice", Generation: s.Snapshot.Generation, AccessToken: "a2"})
	if err != nil || up.Snapshot.Version != s.Snapshot.Version+1 || up.Snapshot.AccessToken != "a2" {
		t.Fatalf("UpdateTokens = %+v, %v", up, err)
	}
	cur, _ := AskAs[*messages.CurrentAuth](ctx, sys, pid, &messages.GetCurrentAuth{})
	if cur.Record.RefreshToken != "r-alice" {
		t.Fatalf("empty RefreshToken must keep the stored one, got %q", string(cur.Record.RefreshToken))
	}
	if v := view.Current(); v.AccessToken != "a2" {
		t.Fatal("snapshot not updated")
	}
	ended, err := AskAs[*messages.SessionEnded](ctx, sys, pid, &messages.EndSession{UID: "alice", Generation: s.Snapshot.Generation, Reason: messages.EndExpired})
	if err != nil || !ended.Ended {
		t.Fatalf("EndSession = %+v, %v", ended, err)
	}
	if view.Current() != nil {
		t.Fatal("snapshot still set after the session ended")
	}
	_, err = AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "alice", Generation: s.Snapshot.Generation, AccessToken: "late"})
	if !errors.Is(err, messages.ErrSessionExpired) {
		t.Fatalf("late UpdateTokens: %v, want ErrSessionExpired", err)
	}
	st, _ := store.Load(ctx)
	if len(st.Records) != 0 || st.Current != "" {
		t.Fatalf("store after EndSession: %+v", st)
	}
	again, _ := AskAs[*messages.SessionEnded](ctx, sys, pid, &messages.EndSession{UID: "alice", Generation: s.Snapshot.Generation})
	if again.Ended {
		t.Fatal("a stale EndSession ended something")
	}
}

func TestAuthStore_BadInputIsAnError(t *testing.T) {
	sys := newTestSystem(t)
	store := persistence.NewMemory()
	defer store.Close()
	pid := spawnStore(t, sys, store, &TokenView{})
	ctx := authCtx(t)
	if _, err := Ask(ctx, sys, pid, &messages.SaveAuth{Record: messages.AuthRecord{UID: "x"}}); err == nil {
		t.Fatal("SaveAuth without a token accepted")
	}
	if _, err := Ask(ctx, sys, pid, &messages.SwitchAccount{UID: "nobody"}); !errors.Is(err, messages.ErrUnknownAccount) {
		t.Fatalf("switch to unknown: %v", err)
	}
	if _, err := Ask(ctx, sys, pid, "not a message"); err == nil {
		t.Fatal("unknown message answered without error")
	}
}

// A PID subscriber gets the current status, then transitions only.
func TestAuthStore_PIDSubscriber(t *testing.T) {
	sys := newTestSystem(t)
	store := persistence.NewMemory()
	defer store.Close()
	pid := spawnStore(t, sys, store, &TokenView{})
	ctx := authCtx(t)
	got := make(chan messages.AuthStatus, 16)
	sub := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*messages.AuthChanged); ok {
			got <- m.Status
		}
	}))
	defer sys.Root.Stop(sub)
	if _, err := AskAs[*messages.AuthSubscription](ctx, sys, pid, &messages.SubscribeAuth{PID: sub}); err != nil {
		t.Fatal(err)
	}
	s := save(t, sys, pid, "alice")
	if _, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: "alice", Generation: s.Snapshot.Generation, AccessToken: "a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := AskAs[*messages.LoggedOut](ctx, sys, pid, &messages.LogOut{}); err != nil {
		t.Fatal(err)
	}
	want := []messages.AuthStatus{{State: messages.Unauthenticated}, {State: messages.Authenticated, UID: "alice"}, {State: messages.Unauthenticated}}
	for i, w := range want {
		if g := <-got; g != w {
			t.Fatalf("event %d = %v, want %v", i, g, w)
		}
	}
	// the refresh (UpdateTokens) published nothing: the next event is absent
	// until another transition happens
	save(t, sys, pid, "bob")
	if g := <-got; g != (messages.AuthStatus{State: messages.Authenticated, UID: "bob"}) {
		t.Fatalf("next event = %v", g)
	}
}
