package actors

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
	"github.com/apppigeon/pigeon/transport/ws"
)

// nextStatus returns the next status of sub (bounded by a 10s context).
func nextStatus(t *testing.T, sub *SocketStatusSubscription) messages.SocketStatus {
	t.Helper()
	select {
	case st, ok := <-sub.C:
		if !ok {
			t.Fatal("status subscription closed")
		}
		return st
	case <-tctx(t).Done():
		t.Fatal("no status")
		return messages.SocketStatus{}
	}
}

// wantStatus is what one status must say; err, when set, must match Err
// with errors.Is (nil: Err must be nil unless errAs is set).
type wantStatus struct {
	state     messages.SocketState
	attempt   int
	delay     time.Duration
	recovered bool
	err       error
	anyErr    bool // Err must be non-nil, whatever it is
}

func checkStatus(t *testing.T, i int, got messages.SocketStatus, w wantStatus) {
	t.Helper()
	errOK := got.Err == nil
	switch {
	case w.err != nil:
		errOK = errors.Is(got.Err, w.err)
	case w.anyErr:
		errOK = got.Err != nil
	}
	if got.State != w.state || got.Attempt != w.attempt || got.Delay != w.delay || got.Recovered != w.recovered || !errOK {
		t.Fatalf("status %d = %+v, want %+v", i, got, w)
	}
}

// The stream: the current state first, then every transition with its
// attempt, delay, cause and whether the rejoin recovered; nothing else.
func TestSocketStatus_EveryTransitionInOrder(t *testing.T) {
	feed := NewSocketStatusFeed()
	sub := feed.Subscribe(context.Background(), 64)
	twin := ws.NewBackoff(0, 0, rand.New(rand.NewPCG(1, 2))) // the env's jitter seed
	e := newSockEnv(t, func(c *SocketConfig) { c.Status = feed })

	checkStatus(t, 0, nextStatus(t, sub), wantStatus{state: messages.SocketIdle})
	e.listen("")
	c := e.acceptJoined()
	c.closeWith(4000, "bye")
	e.clock.Advance(e.waitShortTimer())
	e.acceptJoined()
	sockAsk[*messages.Disconnected](t, e, &messages.Disconnect{})

	want := []wantStatus{
		{state: messages.SocketConnecting},
		{state: messages.SocketConnected},
		{state: messages.SocketReconnecting, attempt: 1, delay: twin.Delay(0), anyErr: true},
		{state: messages.SocketConnecting, attempt: 1},
		{state: messages.SocketConnected, recovered: true},
		{state: messages.SocketClosed, err: messages.ErrClosed},
	}
	for i, w := range want {
		got := nextStatus(t, sub)
		checkStatus(t, i+1, got, w)
		if w.state == messages.SocketReconnecting {
			var ce *wsCloseError
			if !errors.As(got.Err, &ce) || ce.Code != 4000 {
				t.Fatalf("reconnecting cause %v, want the 4000 close", got.Err)
			}
		}
	}
	feed.Close()
	if st, ok := <-sub.C; ok {
		t.Fatalf("extra status %+v after SocketClosed", st)
	}
	if sub.Dropped() != 0 {
		t.Fatalf("dropped %d with room to spare", sub.Dropped())
	}
}

// A full queue drops the oldest and counts it: the reader ends on the
// newest status, so the final SocketClosed is never lost.
func TestSocketStatusFeed_OverflowKeepsTheNewest(t *testing.T) {
	feed := NewSocketStatusFeed()
	sub := feed.Subscribe(context.Background(), 2)
	owner := feed.claim()
	for n := 1; n <= 10; n++ {
		feed.publish(owner, messages.SocketStatus{State: messages.SocketReconnecting, Attempt: n})
	}
	feed.publish(owner, messages.SocketStatus{State: messages.SocketClosed, Err: messages.ErrReconnectExhausted})
	got := []messages.SocketStatus{nextStatus(t, sub), nextStatus(t, sub)}
	if got[0].Attempt != 10 || got[1].State != messages.SocketClosed || !errors.Is(got[1].Err, messages.ErrReconnectExhausted) {
		t.Fatalf("kept %+v, want attempt 10 then the closed status", got)
	}
	if d := sub.Dropped(); d != 10 { // idle + attempts 1..9
		t.Fatalf("dropped %d, want 10", d)
	}
	if cur := feed.Current(); cur.State != messages.SocketClosed {
		t.Fatalf("current %+v", cur)
	}
	late := feed.Subscribe(context.Background(), 0)
	if st := nextStatus(t, late); st.State != messages.SocketClosed {
		t.Fatalf("a late subscriber starts with %+v, want the current state", st)
	}
	sub.Close()
	sub.Close() // idempotent
	feed.Close()
	if _, ok := <-late.C; ok {
		t.Fatal("late subscription open after feed.Close")
	}
}

// Only the incarnation that claimed the feed last publishes: an old socket
// still shutting down cannot overwrite the state of its replacement.
func TestSocketStatusFeed_OnlyTheLatestIncarnationPublishes(t *testing.T) {
	feed := NewSocketStatusFeed()
	old := feed.claim()
	feed.publish(old, messages.SocketStatus{State: messages.SocketConnected})
	cur := feed.claim()
	feed.publish(cur, messages.SocketStatus{State: messages.SocketConnecting})
	feed.publish(old, messages.SocketStatus{State: messages.SocketClosed, Err: messages.ErrClosed})
	if st := feed.Current(); st.State != messages.SocketConnecting {
		t.Fatalf("current %+v, want the new socket's connecting", st)
	}
	feed.Close()
}

// WithReconnect's bound: when the attempts run out the stream ends in
// SocketClosed with ErrReconnectExhausted, and Listen and Emit say so.
func TestSocketStatus_ReconnectExhaustedEndsClosed(t *testing.T) {
	feed := NewSocketStatusFeed()
	sub := feed.Subscribe(context.Background(), 64)
	e := newSockEnv(t, func(c *SocketConfig) { c.Status = feed; c.MaxReconnectAttempts = 2 })
	e.srv.setUpgrade(func(*http.Request) int { return http.StatusServiceUnavailable })
	e.listen("")
	for range 2 {
		e.clock.Advance(e.waitShortTimer())
	}
	var states []messages.SocketState
	var last messages.SocketStatus
	for last.State != messages.SocketClosed {
		last = nextStatus(t, sub)
		states = append(states, last.State)
	}
	wantStates := []messages.SocketState{messages.SocketIdle, messages.SocketConnecting, messages.SocketReconnecting,
		messages.SocketConnecting, messages.SocketReconnecting, messages.SocketConnecting, messages.SocketClosed}
	if !slices.Equal(states, wantStates) || !errors.Is(last.Err, messages.ErrReconnectExhausted) {
		t.Fatalf("states %v, last %+v; want %v ending in ErrReconnectExhausted", states, last, wantStates)
	}
	var hs *ws.HandshakeError
	if !errors.As(last.Err, &hs) || hs.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("closed error %v does not carry the last cause", last.Err)
	}
	for _, msg := range []any{&messages.Listen{}, &messages.Emit{Event: "x"}} {
		if _, err := Ask(tctx(t), e.sys, e.pid, msg); !errors.Is(err, messages.ErrReconnectExhausted) {
			t.Fatalf("%T after exhaustion: %v", msg, err)
		}
	}
}

// spawnTokenStore is an AuthStore (in memory) in sys holding alice (current,
// token a1) and bob (b1); it returns the store and their saves.
func spawnTokenStore(t *testing.T, sys *actor.ActorSystem) (*actor.PID, map[string]messages.TokenSnapshot) {
	t.Helper()
	pid := sys.Root.Spawn(NewAuthStoreProps(persistence.NewMemory()))
	t.Cleanup(func() { _ = StopAndWait(tctx(t), sys, pid) })
	saved := map[string]messages.TokenSnapshot{}
	for _, a := range []struct {
		uid, token string
		current    bool
	}{{"bob", "b1", false}, {"alice", "a1", true}} {
		s, err := AskAs[*messages.SavedAuth](tctx(t), sys, pid, &messages.SaveAuth{
			Record: messages.AuthRecord{UID: a.uid, AccessToken: messages.Secret(a.token), RefreshToken: "r"}, MakeCurrent: a.current})
		if err != nil {
			t.Fatal(err)
		}
		saved[a.uid] = s.Snapshot
	}
	return pid, saved
}

// refreshed stores a new access token for uid straight at the AuthStore,
// the way a caller holding the PID from Actors() would.
func refreshed(t *testing.T, e *sockEnv, store *actor.PID, snap messages.TokenSnapshot, token string) {
	t.Helper()
	if _, err := AskAs[*messages.SavedAuth](tctx(t), e.sys, store, &messages.UpdateTokens{
		UID: snap.UID, Generation: snap.Generation, AccessToken: messages.Secret(token)}); err != nil {
		t.Fatal(err)
	}
}

// A socket following the current account learns every token change from
// the AuthStore itself: a refresh sent straight to the store, a switch;
// another account's change does not reach it.
func TestSocketTokens_FollowTheCurrentAccount(t *testing.T) {
	var store *actor.PID
	var saved map[string]messages.TokenSnapshot
	e := newSockEnvIn(t, nil, func(sys *actor.ActorSystem, c *SocketConfig) {
		store, saved = spawnTokenStore(t, sys)
		c.AuthStore = store
		c.InitialHeaders = http.Header{"Authorization": {"Bearer a1"}, "X-App": {"kept"}}
	})
	e.listen("")
	c := e.acceptJoined()

	refreshed(t, e, store, saved["alice"], "a2")
	u := c.nextType(t, "update")
	if got := u.header("Authorization"); got != "Bearer a2" || u.header("X-App") != "kept" {
		t.Fatalf("update carries %q (X-App %q), want Bearer a2 and the other headers", got, u.header("X-App"))
	}
	refreshed(t, e, store, saved["bob"], "b2") // not current: no update
	refreshed(t, e, store, saved["alice"], "a3")
	if got := c.nextType(t, "update").header("Authorization"); got != "Bearer a3" {
		t.Fatalf("next update carries %q, want Bearer a3 (none for bob, who is not current)", got)
	}
	if _, err := AskAs[*messages.SavedAuth](tctx(t), e.sys, store, &messages.SwitchAccount{UID: "bob"}); err != nil {
		t.Fatal(err)
	}
	if got := c.nextType(t, "update").header("Authorization"); got != "Bearer b2" {
		t.Fatalf("after the switch the update carries %q, want Bearer b2", got)
	}
	if st := e.state(); st.Generation != 1 || st.State != messages.SocketConnected {
		t.Fatalf("reconnected: %+v", st)
	}
}

// A socket bound to one account follows that account only, whichever is
// current, and ends with its session.
func TestSocketTokens_FollowTheBoundAccount(t *testing.T) {
	var store *actor.PID
	var saved map[string]messages.TokenSnapshot
	e := newSockEnvIn(t, nil, func(sys *actor.ActorSystem, c *SocketConfig) {
		store, saved = spawnTokenStore(t, sys)
		c.AuthStore, c.UID = store, "bob"
		c.InitialHeaders = http.Header{"Authorization": {"Bearer b1"}}
	})
	l := e.listen("")
	c := e.acceptJoined()
	refreshed(t, e, store, saved["alice"], "a2") // current, but not bob
	refreshed(t, e, store, saved["bob"], "b2")
	if got := c.nextType(t, "update").header("Authorization"); got != "Bearer b2" {
		t.Fatalf("first update carries %q, want bob's Bearer b2", got)
	}
	if _, err := AskAs[*messages.LoggedOut](tctx(t), e.sys, store, &messages.RemoveAccount{UID: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := waitClosedListener(t, l); !errors.Is(err, messages.ErrLoggedOut) {
		t.Fatalf("listener after bob's removal: %v, want ErrLoggedOut", err)
	}
}

// A server's ping values are clamped: MaxInt64 ms used to overflow to a
// negative interval, 1 ms made pigeon ping a thousand times a second.
func TestServerPing_ClampedToItsRange(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{
		{math.MaxInt64, MaxServerPing}, {MaxServerPing.Milliseconds() + 1, MaxServerPing},
		{1, MinServerPing}, {0, MinServerPing}, {-5, MinServerPing}, {30_000, 30 * time.Second},
	} {
		if got := ServerPing(tc.ms); got != tc.want {
			t.Errorf("ServerPing(%d) = %v, want %v", tc.ms, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{{math.MaxInt64, MaxServerPing}, {1, MinServerPing}} {
		e := newSockEnvWith(t, func(s *fakeServer) {
			s.setHandle(func(c *fakeConn, f fakeFrame) bool {
				if f.Type != "init" {
					return false
				}
				c.send(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s1", "pingIntervalMs": tc.ms}})
				return true
			})
		}, nil)
		e.listen("")
		e.acceptJoined()
		if err := e.clock.WaitFor(tctx(t), func(p []time.Duration) bool { return slices.Contains(p, tc.want) }); err != nil {
			t.Fatalf("pingIntervalMs %d: timers %v, want a %v ping", tc.ms, e.clock.Pending(), tc.want)
		}
	}
}

// A server that accepts the credentials and then refuses them (close 4003)
// at once, again and again, gets one refresh per backoff step: the first
// refusal retries at once with fresh headers, every later one waits for a
// growing backoff delay first.
func TestSocketFlaps_OneRefreshPerBackoffStep(t *testing.T) {
	var refreshes atomic.Int64
	twin := ws.NewBackoff(0, 0, rand.New(rand.NewPCG(1, 2)))
	e := newSockEnvWith(t, func(s *fakeServer) {
		s.setHandle(func(c *fakeConn, f fakeFrame) bool {
			if f.Type != "init" {
				return false
			}
			c.send(map[string]any{"type": "init_ack", "id": f.ID, "payload": map[string]any{"session": "s"}})
			// The close frame only: the client answers it and closes, so it
			// reads the 4003 rather than a reset.
			c.wmu.Lock()
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4003, "token expired"), time.Now().Add(5*time.Second))
			c.wmu.Unlock()
			return true
		})
	}, func(c *SocketConfig) {
		c.Headers = func(_ context.Context, rejected http.Header) (http.Header, error) {
			if rejected != nil {
				refreshes.Add(1)
			}
			return http.Header{"Authorization": {"Bearer T1"}}, nil
		}
	})
	e.listen("")
	for step := range 3 {
		got := e.waitShortTimer()
		if n := refreshes.Load(); n != int64(step+1) {
			t.Fatalf("step %d: %d refreshes, want %d", step, n, step+1)
		}
		if want := twin.Delay(step); got != want {
			t.Fatalf("step %d: delay %v, want %v", step, got, want)
		}
		e.clock.Advance(got)
	}
}

// A seq of 2⁶⁴−1 from the server is delivered but never becomes the
// channel's position: the events after it are not taken for duplicates,
// and dedupe still works.
func TestSocketSeq_HugeSequenceDoesNotPoisonDedupe(t *testing.T) {
	e := newSockEnv(t, nil)
	l := e.listen("msg")
	c := e.acceptJoined()
	for _, seq := range []uint64{5, math.MaxUint64, 6, 6, 7} {
		c.event("room:42", "msg", seq, `{}`)
	}
	for _, want := range []uint64{5, math.MaxUint64, 6, 7} {
		if ev := recvEvent(t, l); ev.Position.Seq != want {
			t.Fatalf("event seq %d, want %d", ev.Position.Seq, want)
		}
	}
	st := e.state()
	if st.Duplicates != 1 || st.Positions["room:42"].Seq != 7 {
		t.Fatalf("duplicates %d, position %+v; want 1 and seq 7", st.Duplicates, st.Positions["room:42"])
	}
}
