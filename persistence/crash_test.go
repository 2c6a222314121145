//go:build unix

package persistence

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/internal/crashtest"
	"github.com/apppigeon/pigeon/messages"
)

// crashDirEnv switches the test binary into the writer process of
// TestCrash_KillDuringWrites: TestCrashChild writes to the store in it.
const crashDirEnv = "PIGEON_PERSISTENCE_CRASH_DIR"

// The writer process runs crashWriters concurrent writers; writer w owns
// the accounts crashUIDs(w) and rotates all of them in each of its Applies
// (iteration n of writer w). Writer 0 also moves the current pointer to
// one of its accounts, and its records are padded past badger's value
// threshold now and then, so the value log is exercised too.
const crashWriters = 32

var crashNames = []string{"alice", "bob", "carol"}

// crashUIDs returns writer w's accounts, sorted.
func crashUIDs(w int) []string {
	out := make([]string, len(crashNames))
	for i, name := range crashNames {
		out[i] = fmt.Sprintf("w%02d-%s", w, name)
	}
	return out
}

// crashWriterOf returns the writer that owns uid.
func crashWriterOf(uid string) (int, error) {
	var w int
	if _, err := fmt.Sscanf(uid, "w%02d-", &w); err != nil || w < 0 || w >= crashWriters {
		return 0, fmt.Errorf("record %q belongs to no writer", uid)
	}
	return w, nil
}

var crashBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// crashCurrent is the current account after writer 0's iteration n.
func crashCurrent(n int) string { return crashUIDs(0)[n%len(crashNames)] }

// crashRecord is iteration n of uid: every field carries n and the
// writer's name.
func crashRecord(uid string, n int, data []byte) messages.AuthRecord {
	return messages.AuthRecord{
		UID:          uid,
		AccessToken:  messages.Secret(fmt.Sprintf("a-%s-%d", uid, n)),
		RefreshToken: messages.Secret(fmt.Sprintf("r-%s-%d", uid, n)),
		ExpiresAt:    crashBase.Add(time.Duration(n) * time.Second),
		IssuedAt:     crashBase.Add(time.Duration(n) * time.Millisecond),
		Data:         data,
	}
}

// crashPut returns writer w's records of iteration n (Data padded to a
// random size; writer 0's larger, sometimes past badger's value
// threshold).
func crashPut(w, n int, rnd *rand.Rand) []messages.AuthRecord {
	out := make([]messages.AuthRecord, 0, len(crashNames))
	for _, uid := range crashUIDs(w) {
		size := rnd.IntN(300)
		switch {
		case w > 0:
		case rnd.IntN(8) == 0:
			size = 70_000 + rnd.IntN(10_000)
		default:
			size = rnd.IntN(3000)
		}
		data, _ := json.Marshal(crashData{N: n, Pad: strings.Repeat(string(rune('a'+n%26)), size)})
		out = append(out, crashRecord(uid, n, data))
	}
	return out
}

type crashData struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

// crashIterations checks that st holds, for every writer, one complete
// iteration (every field of every one of its records from the same n),
// and the current pointer of writer 0's iteration, and returns each
// writer's iteration (0: none of its records stored).
func crashIterations(st State) ([]int, error) {
	groups := make([][]messages.AuthRecord, crashWriters)
	for _, r := range st.Records {
		w, err := crashWriterOf(r.UID)
		if err != nil {
			return nil, err
		}
		groups[w] = append(groups[w], r)
	}
	iters := make([]int, crashWriters)
	for w, recs := range groups {
		n, err := crashIteration(w, recs)
		if err != nil {
			return nil, fmt.Errorf("writer %d: %v", w, err)
		}
		iters[w] = n
	}
	want := ""
	if iters[0] > 0 {
		want = crashCurrent(iters[0])
	}
	if st.Current != want {
		return nil, fmt.Errorf("current %q, want %q of writer 0's iteration %d", st.Current, want, iters[0])
	}
	return iters, nil
}

// crashIteration checks that recs (sorted) are writer w's accounts all
// from one iteration and returns it; 0 for none.
func crashIteration(w int, recs []messages.AuthRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	names := crashUIDs(w)
	if len(recs) != len(names) {
		return 0, fmt.Errorf("%d records %v, want %v", len(recs), uids(recs), names)
	}
	var d crashData
	if err := json.Unmarshal(recs[0].Data, &d); err != nil {
		return 0, fmt.Errorf("record %q: Data: %v", recs[0].UID, err)
	}
	n := d.N
	for i, r := range recs {
		var got crashData
		if err := json.Unmarshal(r.Data, &got); err != nil {
			return 0, fmt.Errorf("record %q: Data: %v", r.UID, err)
		}
		want := crashRecord(names[i], n, r.Data)
		if diff := diffRecord(r, want); diff != "" || got.N != n || strings.Trim(got.Pad, string(rune('a'+n%26))) != "" {
			return 0, fmt.Errorf("record %q is not all from iteration %d: %s (data n=%d)", r.UID, n, diff, got.N)
		}
	}
	return n, nil
}

// TestCrashChild is the writer process of TestCrash_KillDuringWrites; run
// directly it skips. It continues from the stored iterations and runs
// crashWriters writers concurrently (their Applies share synced
// transactions: group commit); each, forever, applies its next iteration
// (all its accounts rotated in one Apply) and then prints
// "synced <writer> <n>". It is killed with SIGKILL; if its parent is gone,
// its next print dies of SIGPIPE.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("writer process of TestCrash_KillDuringWrites")
	}
	ctx := context.Background()
	s, err := OpenBadger(dir, WithGetenv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	iters, err := crashIterations(st)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("opened %v\n", iters)
	var wg sync.WaitGroup
	for w, n := range iters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(w)<<32|uint64(n)))
			for n++; n < 1_000_000; n++ {
				ch := Change{Put: crashPut(w, n, rnd)}
				if w == 0 {
					ch.SetCurrent = strp(crashCurrent(n))
				}
				if err := s.Apply(ctx, ch); err != nil {
					// Not t.Fatal (another goroutine): the parent sees
					// the exit status and this on stderr.
					fmt.Fprintf(os.Stderr, "writer %d: Apply of iteration %d: %v\n", w, n, err)
					os.Exit(2)
				}
				fmt.Printf("synced %d %d\n", w, n)
			}
		}()
	}
	wg.Wait()
	t.Fatal("never killed")
}

// TestCrash_KillDuringWrites (refresh.md row 21): a process killed with
// SIGKILL at any moment while crashWriters concurrent writers save or
// rotate tokens of many accounts leaves a store that opens and holds, for
// every writer, one complete iteration of all its accounts (never a mix of
// iterations, never a mix of writers), writer 0's current pointer of the
// same iteration, and an iteration no older than the last one the
// writer acknowledged as synced: every acknowledged change survives. 25
// kills (10 with -short), each after a random number (1-4) of
// acknowledged iterations per writer plus a random part of one more; the
// writers are then inside their next Apply (queued, or in the transaction
// being synced), their print, or between them.
func TestCrash_KillDuringWrites(t *testing.T) {
	kills := crashtest.Kills(25, 10)
	rnd := crashtest.NewRand(t)
	dir := filepath.Join(t.TempDir(), "store")
	tally := crashtest.NewTally(crashWriters)
	for k := range kills {
		acked := runWriterAndKill(t, rnd, dir, crashWriters*(1+rnd.IntN(4)))
		if err := tally.After(acked, verifyCrashStore(t, dir)); err != nil {
			t.Fatalf("kill %d: %v", k, err)
		}
	}
	t.Logf("%d kills, %d writers, %d iterations stored in all; %d Applies in flight at a kill had committed",
		kills, crashWriters, tally.Total, tally.InFlight)
}

// runWriterAndKill starts TestCrashChild on dir, waits until it has
// acknowledged target iterations (of all writers together), kills it with
// SIGKILL at a random moment within about one more iteration of every
// writer, and returns the last iteration each writer acknowledged
// (including lines still in the pipe; 0 for none).
func runWriterAndKill(t *testing.T, rnd *rand.Rand, dir string, target int) []int {
	t.Helper()
	return crashtest.RunAndKill(t, crashtest.Writer{
		Test: "TestCrashChild", Env: []string{crashDirEnv + "=" + dir}, Writers: crashWriters,
		// Kill at a random moment of the next round of iterations, not
		// right away (that would almost always land before a transaction
		// writes anything). A round is about crashWriters lines.
		Pause: func(perAck time.Duration) time.Duration {
			return time.Duration(rnd.Int64N(int64(perAck*crashWriters) + 1))
		},
	}, target)
}

// verifyCrashStore reopens the store, checks it holds one complete
// iteration of every writer and returns them.
func verifyCrashStore(t *testing.T, dir string) []int {
	t.Helper()
	s, err := OpenBadger(dir, WithGetenv(noEnv))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("load after kill: %v", err)
	}
	iters, err := crashIterations(st)
	if err != nil {
		t.Fatalf("after kill: %v", err)
	}
	return iters
}
