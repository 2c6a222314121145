//go:build unix

package persistence

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// crashDirEnv switches the test binary into the writer process of
// TestCrash_KillDuringWrites: TestCrashChild writes to the store in it.
const crashDirEnv = "PIGEON_PERSISTENCE_CRASH_DIR"

var crashUIDs = []string{"alice", "bob", "carol"}

var crashBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// crashPut returns iteration n's records: every field of every record
// carries n (Data is padded to a random size, up to past badger's value
// threshold so the value log is exercised too).
func crashPut(n int, rnd *rand.Rand) []messages.AuthRecord {
	out := make([]messages.AuthRecord, 0, len(crashUIDs))
	for _, uid := range crashUIDs {
		size := rnd.IntN(3000)
		if rnd.IntN(8) == 0 {
			size = 70_000 + rnd.IntN(10_000)
		}
		data, _ := json.Marshal(crashData{N: n, Pad: strings.Repeat(string(rune('a'+n%26)), size)})
		out = append(out, messages.AuthRecord{
			UID:          uid,
			AccessToken:  messages.Secret(fmt.Sprintf("a-%s-%d", uid, n)),
			RefreshToken: messages.Secret(fmt.Sprintf("r-%s-%d", uid, n)),
			ExpiresAt:    crashBase.Add(time.Duration(n) * time.Second),
			IssuedAt:     crashBase.Add(time.Duration(n) * time.Millisecond),
			Data:         data,
		})
	}
	return out
}

type crashData struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

// crashIteration checks that st is one complete iteration (every field of
// every record and the current pointer from the same n) and returns n; 0
// for an empty store.
func crashIteration(st State) (int, error) {
	if len(st.Records) == 0 && st.Current == "" {
		return 0, nil
	}
	if len(st.Records) != len(crashUIDs) {
		return 0, fmt.Errorf("%d records %v, want %v", len(st.Records), uids(st.Records), crashUIDs)
	}
	var d crashData
	if err := json.Unmarshal(st.Records[0].Data, &d); err != nil {
		return 0, fmt.Errorf("record %q: Data: %v", st.Records[0].UID, err)
	}
	n := d.N
	for i, r := range st.Records {
		var got crashData
		if err := json.Unmarshal(r.Data, &got); err != nil {
			return 0, fmt.Errorf("record %q: Data: %v", r.UID, err)
		}
		want := messages.AuthRecord{
			UID:          crashUIDs[i],
			AccessToken:  messages.Secret(fmt.Sprintf("a-%s-%d", crashUIDs[i], n)),
			RefreshToken: messages.Secret(fmt.Sprintf("r-%s-%d", crashUIDs[i], n)),
			ExpiresAt:    crashBase.Add(time.Duration(n) * time.Second),
			IssuedAt:     crashBase.Add(time.Duration(n) * time.Millisecond),
			Data:         r.Data,
		}
		if diff := diffRecord(r, want); diff != "" || got.N != n || strings.Trim(got.Pad, string(rune('a'+n%26))) != "" {
			return 0, fmt.Errorf("record %q is not all from iteration %d: %s (data n=%d)", r.UID, n, diff, got.N)
		}
	}
	if want := crashUIDs[n%len(crashUIDs)]; st.Current != want {
		return 0, fmt.Errorf("current %q, want %q of iteration %d", st.Current, want, n)
	}
	return n, nil
}

// TestCrashChild is the writer process of TestCrash_KillDuringWrites; run
// directly it skips. It continues from the stored iteration and, forever,
// applies the next iteration (all accounts rotated in one Apply) and then
// prints "synced <n>". It is killed with SIGKILL; if its parent is gone,
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
	n, err := crashIteration(st)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(n)))
	fmt.Printf("opened %d\n", n)
	for n++; n < 1_000_000; n++ {
		cur := crashUIDs[n%len(crashUIDs)]
		if err := s.Apply(ctx, Change{Put: crashPut(n, rnd), SetCurrent: &cur}); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("synced %d\n", n)
	}
	t.Fatal("never killed")
}

// TestCrash_KillDuringWrites (refresh.md row 21): a process killed with
// SIGKILL at any moment while tokens are saved or rotated leaves a store
// that opens and holds, for every account, one complete record (never a
// mix of iterations), the current pointer of the same iteration, and an
// iteration no older than the last one the writer acknowledged as synced.
// 50 kills (10 with -short), each after a random number (1-6) of
// acknowledged iterations plus a random part of one more; the writer is
// then inside its next Apply, its print, or between them.
func TestCrash_KillDuringWrites(t *testing.T) {
	kills := 50
	if testing.Short() {
		kills = 10
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed>>1))
	dir := filepath.Join(t.TempDir(), "store")
	stored, inFlight := 0, 0
	for k := range kills {
		acked := runWriterAndKill(t, rnd, dir, 1+rnd.IntN(6))
		if acked <= stored {
			t.Fatalf("kill %d: writer acknowledged %d, not past the stored %d", k, acked, stored)
		}
		n := verifyCrashStore(t, dir)
		// The Apply in flight at the kill may or may not have committed.
		if n != acked && n != acked+1 {
			t.Fatalf("kill %d: store holds iteration %d; writer acknowledged %d (want %d or %d)", k, n, acked, acked, acked+1)
		}
		if n == acked+1 {
			inFlight++
		}
		stored = n
	}
	t.Logf("%d kills, last iteration %d; the Apply in flight at the kill had committed in %d", kills, stored, inFlight)
}

// runWriterAndKill starts TestCrashChild on dir, waits until it has
// acknowledged target iterations, kills it with SIGKILL at a random moment
// within about one more iteration, and returns the last iteration it
// acknowledged (including lines still in the pipe).
func runWriterAndKill(t *testing.T, rnd *rand.Rand, dir string, target int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked, seen := 0, 0
	var last time.Time       // when the previous line arrived
	var period time.Duration // time between the last two lines: about one iteration
	read := func(stopAt int) {
		for seen < stopAt && sc.Scan() {
			now := time.Now()
			period, last = now.Sub(last), now
			var n int
			if _, err := fmt.Sscanf(sc.Text(), "synced %d", &n); err == nil {
				acked, seen = n, seen+1
			}
		}
	}
	read(target)
	// Kill at a random moment of the next iteration, not right away (that
	// would almost always land before the Apply writes anything). This
	// delay only picks the moment; nothing waits on it for correctness.
	time.Sleep(time.Duration(rnd.Int64N(int64(period) + 1)))
	killErr := cmd.Process.Kill() // SIGKILL
	read(int(^uint(0) >> 1))      // drain to EOF: lines written before the kill
	waitErr := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if killErr != nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer was not killed (kill: %v, wait: %v) after %d of %d acknowledgements; stdout scan error %v; stderr:\n%s",
			killErr, waitErr, seen, target, sc.Err(), stderr.String())
	}
	if seen < target {
		t.Fatalf("writer acknowledged %d of %d iterations before dying; stderr:\n%s", seen, target, stderr.String())
	}
	return acked
}

// verifyCrashStore reopens the store, checks it holds one complete
// iteration and returns it.
func verifyCrashStore(t *testing.T, dir string) int {
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
	n, err := crashIteration(st)
	if err != nil {
		t.Fatalf("after kill: %v", err)
	}
	return n
}
