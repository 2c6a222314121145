package pigeon_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// Issue 13 item 8: 100,000 emits across 200 forced reconnects on
// pigeon.v1, each delivered exactly once. Under the race detector (about
// 8x slower: over a minute on two cores) and with -short it runs 10,000
// across 20; CI's run without -race runs the whole soak (about 10s).
func TestEmit_ExactlyOnceAcrossReconnects(t *testing.T) {
	emits, reconnects := 100_000, 200
	if testing.Short() || raceDetector {
		emits, reconnects = 10_000, 20
	}
	soakEmits(t, emits, reconnects)
}

// soakEmits emits n numbered events while the server drops the connection
// k times (backend.CloseAllSockets, close 4004, mid-stream) and checks
// that the server published every number exactly once. Plain Emits, with
// an EmitWithAck every window emits: the server acks in order, so its
// return means every earlier emit is settled, which keeps the emits in
// flight within the buffer.
func soakEmits(t *testing.T, n, k int) {
	const window = 256
	seen := make([]atomic.Int32, n)
	var strange atomic.Int64
	observe := func(r backend.EmitRecord) {
		i, err := strconv.Atoi(string(r.Data))
		if r.Event != "soak" || err != nil || i < 0 || i >= n {
			strange.Add(1)
			return
		}
		seen[i].Add(1)
	}
	e := newEnv(t, envConfig{
		noClock: true,
		backend: []backend.Option{backend.WithEmitObserver(observe)},
		pigeon: []pigeon.Option{
			pigeon.WithReconnect(pigeon.ReconnectPolicy{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}),
			pigeon.WithEmitBuffer(4*window, 8<<20),
		},
	})
	e.login("soak@example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	states, err := e.p.SubscribeSocketState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL(e), JoinID: "soak:room"}); err != nil {
		t.Fatal(err)
	}
	every := n / k
	forced := 0
	for i := range n {
		if i%every == every/2 && forced < k {
			// Drop the live connection; when there is none at this
			// moment (still reconnecting), wait for the next one.
			for e.be.CloseAllSockets(backend.CloseServerRestart, "soak") == 0 {
				for st := recvStatus(t, ctx, states); st.State != pigeon.SocketConnected; st = recvStatus(t, ctx, states) {
				}
			}
			forced++
		}
		if i%window == window-1 || i == n-1 {
			_, err = e.p.EmitWithAck(ctx, "soak", i)
		} else {
			err = e.p.Emit(ctx, "soak", i)
		}
		if err != nil {
			t.Fatalf("emit %d (after %d forced reconnects): %v", i, forced, err)
		}
	}
	if forced != k {
		t.Fatalf("forced %d reconnects, want %d", forced, k)
	}
	var lost, twice int
	for i := range seen {
		switch c := seen[i].Load(); {
		case c == 0:
			lost++
		case c > 1:
			twice++
		}
	}
	st := e.be.Stats()
	t.Logf("%d emits, %d forced reconnects: %d connections accepted, %d copies deduped by the server", n, forced, st.InitAcks, st.EmitDuplicates)
	if lost != 0 || twice != 0 || strange.Load() != 0 {
		t.Fatalf("of %d emits: %d never published, %d published more than once, %d unexpected", n, lost, twice, strange.Load())
	}
	if st.InitAcks < int64(k)+1 {
		t.Fatalf("the server accepted %d connections; %d forced reconnects need %d", st.InitAcks, k, k+1)
	}
}
