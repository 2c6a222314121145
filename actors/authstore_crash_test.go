//go:build unix

package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/internal/crashtest"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// actorCrashDirEnv switches the test binary into the writer process of
// TestAuthStoreCrash_KillDuringConcurrentUpdates.
const actorCrashDirEnv = "PIGEON_ACTORS_CRASH_DIR"

// The writer process updates actorCrashAccounts accounts through one
// AuthStore actor, one writer goroutine per account, all at once: the
// actor keeps their writes in flight together and the store commits them
// in shared synced transactions (group commit).
const actorCrashAccounts = 200

var actorCrashKey = []byte("0123456789abcdef0123456789abcdef")

func actorCrashUID(i int) string { return fmt.Sprintf("acct%03d", i) }

var actorCrashBase = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

// actorCrashUpdate is update n of uid: every field carries uid and n.
func actorCrashUpdate(uid string, n int, gen uint64) *messages.UpdateTokens {
	return &messages.UpdateTokens{
		UID:          uid,
		Generation:   gen,
		AccessToken:  messages.Secret(fmt.Sprintf("a-%s-%d", uid, n)),
		RefreshToken: messages.Secret(fmt.Sprintf("r-%s-%d", uid, n)),
		ExpiresAt:    actorCrashBase.Add(time.Duration(n) * time.Second),
		IssuedAt:     actorCrashBase.Add(time.Duration(n) * time.Millisecond),
		Data:         fmt.Appendf(nil, `{"uid":%q,"n":%d}`, uid, n),
	}
}

// actorCrashIteration returns the update r holds (0: the saved record of
// the first run), or an error if its fields are not all from one update
// of its own account.
func actorCrashIteration(r messages.AuthRecord) (int, error) {
	var n int
	if _, err := fmt.Sscanf(string(r.AccessToken), "a-"+r.UID+"-%d", &n); err != nil {
		return 0, fmt.Errorf("record %q: access token is not its own", r.UID)
	}
	want := actorCrashUpdate(r.UID, n, 0)
	if r.RefreshToken != want.RefreshToken || !r.ExpiresAt.Equal(want.ExpiresAt) ||
		!r.IssuedAt.Equal(want.IssuedAt) || !bytes.Equal(r.Data, want.Data) {
		return 0, fmt.Errorf("record %q is a mix: access token of update %d, refresh %q, expires %v, issued %v, data %s",
			r.UID, n, len(r.RefreshToken), r.ExpiresAt, r.IssuedAt, r.Data)
	}
	return n, nil
}

// actorCrashState reads every account's update from the store in dir;
// every account must be there, each record from one update of its own.
func actorCrashState(dir string) ([]int, error) {
	s, err := persistence.OpenBadger(dir, persistence.WithEncryptionKey(actorCrashKey))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	st, err := s.Load(context.Background())
	if err != nil {
		return nil, err
	}
	if len(st.Records) != actorCrashAccounts {
		return nil, fmt.Errorf("%d records, want %d", len(st.Records), actorCrashAccounts)
	}
	iters := make([]int, actorCrashAccounts)
	for i, r := range st.Records {
		if r.UID != actorCrashUID(i) {
			return nil, fmt.Errorf("record %d is %q, want %q", i, r.UID, actorCrashUID(i))
		}
		if iters[i], err = actorCrashIteration(r); err != nil {
			return nil, err
		}
	}
	return iters, nil
}

// TestAuthStoreCrashChild is the writer process of
// TestAuthStoreCrash_KillDuringConcurrentUpdates; run directly it skips.
// It opens the store through an AuthStore actor, saves the accounts on
// the first run, and then runs one writer per account concurrently: each,
// forever, asks UpdateTokens with its next update and, once acknowledged,
// prints "synced <account> <n>". It is killed with SIGKILL.
func TestAuthStoreCrashChild(t *testing.T) {
	dir := os.Getenv(actorCrashDirEnv)
	if dir == "" {
		t.Skip("writer process of TestAuthStoreCrash_KillDuringConcurrentUpdates")
	}
	store, err := persistence.OpenBadger(dir, persistence.WithEncryptionKey(actorCrashKey))
	if err != nil {
		t.Fatal(err)
	}
	sys := NewSystem(zap.NewNop())
	pid := sys.Root.Spawn(NewAuthStoreProps(store))
	ctx := context.Background()
	// Every account is stored before the first update goes out.
	iters, gens := make([]int, actorCrashAccounts), make([]uint64, actorCrashAccounts)
	for i := range actorCrashAccounts {
		uid := actorCrashUID(i)
		var n int
		var gen uint64
		got, err := AskAs[*messages.CurrentAuth](ctx, sys, pid, &messages.GetAuth{UID: uid})
		switch {
		case errors.Is(err, messages.ErrNoAuth):
			u := actorCrashUpdate(uid, 0, 0)
			saved, err := AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SaveAuth{Record: messages.AuthRecord{UID: uid,
				AccessToken: u.AccessToken, RefreshToken: u.RefreshToken, ExpiresAt: u.ExpiresAt, IssuedAt: u.IssuedAt, Data: u.Data}})
			if err != nil {
				t.Fatal(err)
			}
			gen = saved.Snapshot.Generation
		case err != nil:
			t.Fatal(err)
		default:
			if n, err = actorCrashIteration(got.Record); err != nil {
				t.Fatal(err)
			}
			gen = got.Snapshot.Generation
		}
		iters[i], gens[i] = n, gen
	}
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for i := range actorCrashAccounts {
		uid, n, gen := actorCrashUID(i), iters[i], gens[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n++; ; n++ {
				if _, err := AskAs[*messages.SavedAuth](ctx, sys, pid, actorCrashUpdate(uid, n, gen)); err != nil {
					// Not t.Fatal (another goroutine): the parent sees the
					// exit status and this on stderr.
					fmt.Fprintf(os.Stderr, "%s: update %d: %v\n", uid, n, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("synced %d %d\n", i, n)
				mu.Unlock()
			}
		}()
	}
	fmt.Println("started")
	wg.Wait()
}

// TestAuthStoreCrash_KillDuringConcurrentUpdates (accounts.md A17): a
// process killed with SIGKILL while 200 writers update their own accounts
// through one AuthStore actor at once (their writes batched into shared
// synced transactions) leaves a store in which every account is there,
// each record is all from one update of its own account (never a mix of
// two updates, never another account's tokens), and no account is older
// than the last update the actor acknowledged for it (nor newer than the
// one in flight at the kill). 12 kills (6 with -short), each after a
// random number of acknowledgements; the writers are then inside their
// next update (waiting in the actor, in the store's queue, in the
// transaction being synced) or printing.
func TestAuthStoreCrash_KillDuringConcurrentUpdates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	kills, tally, rnd := crashtest.Kills(12, 6), crashtest.NewTally(actorCrashAccounts), crashtest.NewRand(t)
	for k := range kills {
		acked := runActorWriterAndKill(t, dir, actorCrashAccounts*(1+rnd.IntN(3))+rnd.IntN(actorCrashAccounts))
		iters, err := actorCrashState(dir)
		if err == nil {
			err = tally.After(acked, iters)
		}
		if err != nil {
			t.Fatalf("kill %d: after the kill: %v", k, err)
		}
	}
	t.Logf("%d kills, %d accounts (writers), %d updates stored in all; %d updates in flight at a kill had committed",
		kills, actorCrashAccounts, tally.Total, tally.InFlight)
}

// runActorWriterAndKill starts TestAuthStoreCrashChild on dir, kills it
// with SIGKILL once it has acknowledged target updates (all accounts
// together; the writers keep going while the parent reads, so the kill
// lands at no particular point of their work), and returns the last
// update acknowledged per account (lines still in the pipe included).
func runActorWriterAndKill(t *testing.T, dir string, target int) []int {
	t.Helper()
	return crashtest.RunAndKill(t, crashtest.Writer{
		Test: "TestAuthStoreCrashChild", Env: []string{actorCrashDirEnv + "=" + dir}, Writers: actorCrashAccounts,
	}, target)
}
