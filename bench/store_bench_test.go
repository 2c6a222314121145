package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// storeKey is the AES-256 key of every store in these benchmarks.
var storeKey = []byte("0123456789abcdef0123456789abcdef")

// Token bodies and times of storeRecord.
var (
	accessBody  = strings.Repeat("a", 300)
	refreshBody = strings.Repeat("r", 64)
	storeEpoch  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

// storeRecord is account uid's record after its n-th refresh: a
// JWT-sized access token, a refresh token and a little user data, about
// 500 bytes of payload.
func storeRecord(uid string, n int) messages.AuthRecord {
	num := strconv.Itoa(n)
	return messages.AuthRecord{
		UID:          uid,
		AccessToken:  messages.Secret(uid + "." + accessBody + "." + num),
		RefreshToken: messages.Secret(uid + "." + refreshBody + "." + num),
		ExpiresAt:    storeEpoch.Add(time.Duration(n) * time.Minute),
		IssuedAt:     storeEpoch,
		Data:         []byte(`{"name":"user ` + uid + `","roles":["reader","writer"],"n":` + num + `}`),
	}
}

// payload is the size of what a record carries (its strings and Data).
func payload(r messages.AuthRecord) int {
	return len(r.UID) + len(r.AccessToken) + len(r.RefreshToken) + len(r.Data)
}

// writerRecords builds, before the timer, the records writers update in
// turn: for each writer w, account "w%04d" after refreshes 1..variants.
// Update n of a writer takes variant n%variants, so every update changes
// the stored value and the timed loop measures the store, not the
// formatting of records.
func writerRecords(writers int) [][]messages.AuthRecord {
	const variants = 4
	recs := make([][]messages.AuthRecord, writers)
	for w := range recs {
		for v := 1; v <= variants; v++ {
			recs[w] = append(recs[w], storeRecord(fmt.Sprintf("w%04d", w), v))
		}
	}
	return recs
}

// runWriters runs b.N updates spread over writers goroutines (each takes
// the next update number until b.N are taken) and reports updates/s.
func runWriters(b *testing.B, writers int, update func(w, n int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1))
				if n > b.N {
					return
				}
				if err := update(w, n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
}

// BenchmarkStoreSyncedUpdates compares synced token updates per second:
// the raw baseline (one writer: a plain file write + fsync per update of
// the same encoded size), the encrypted badger store with one writer and
// with 1,000 concurrent writers (each on its own account: their Applies
// share synced transactions, group commit), UpdateTokens through the
// AuthStore actor with 1 and 1,000 callers (each on its own account: the
// actor has their writes in flight at once), and SaveNewAuth through the
// facade with 1,000 callers (each makes its account current, so each
// waits for the one before: the current pointer is one write at a time).
func BenchmarkStoreSyncedUpdates(b *testing.B) {
	b.Run("baseline=file-write+fsync", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		size := payload(storeRecord("w0000", 0)) + 100 // about the JSON encoding
		buf := []byte(strings.Repeat("x", size))
		runWriters(b, 1, func(_, n int) error {
			if _, err := f.WriteAt(buf, int64(n%64)*int64(size)); err != nil {
				return err
			}
			return f.Sync()
		})
	})
	for _, writers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("badger,writers=%d", writers), func(b *testing.B) {
			recs := writerRecords(writers)
			s, err := persistence.OpenBadger(filepath.Join(b.TempDir(), "store"), persistence.WithEncryptionKey(storeKey))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			runWriters(b, writers, func(w, n int) error {
				return s.Apply(ctx, persistence.Change{Put: recs[w][n%len(recs[w]) : n%len(recs[w])+1]})
			})
		})
	}
	for _, callers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("actor=UpdateTokens,callers=%d", callers), func(b *testing.B) {
			s, err := persistence.OpenBadger(filepath.Join(b.TempDir(), "store"), persistence.WithEncryptionKey(storeKey))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			sys := actors.NewSystem(zap.NewNop())
			defer sys.Shutdown()
			pid := sys.Root.Spawn(actors.NewAuthStoreProps(s))
			defer func() { _ = actors.StopAndWait(context.Background(), sys, pid) }()
			ctx := context.Background()
			recs := writerRecords(callers)
			gens := make([]uint64, callers)
			for w := range gens {
				saved, err := actors.AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SaveAuth{Record: storeRecord(fmt.Sprintf("w%04d", w), 0)})
				if err != nil {
					b.Fatal(err)
				}
				gens[w] = saved.Snapshot.Generation
			}
			runWriters(b, callers, func(w, n int) error {
				r := recs[w][n%len(recs[w])]
				_, err := actors.AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{UID: r.UID, Generation: gens[w],
					AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, ExpiresAt: r.ExpiresAt, IssuedAt: r.IssuedAt})
				return err
			})
		})
	}
	b.Run("pigeon=SaveNewAuth,callers=1000", func(b *testing.B) {
		p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{},
			pigeon.WithStoreDir(filepath.Join(b.TempDir(), "store")), pigeon.WithEncryptionKey(storeKey))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		runWriters(b, 1000, func(w, n int) error {
			r := storeRecord(fmt.Sprintf("w%04d", w), n)
			return p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: r.UID, AccessToken: string(r.AccessToken),
				RefreshToken: string(r.RefreshToken), ExpiresAt: r.ExpiresAt})
		})
	})
}

// fillStore creates an encrypted store of n accounts (the first one
// current) in dir and closes it.
func fillStore(b *testing.B, dir string, n int) {
	b.Helper()
	s, err := persistence.OpenBadger(dir, persistence.WithEncryptionKey(storeKey))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const chunk = 500
	for i := 0; i < n; i += chunk {
		ch := persistence.Change{}
		for j := i; j < min(i+chunk, n); j++ {
			ch.Put = append(ch.Put, storeRecord(fmt.Sprintf("u%06d", j), 1))
		}
		if i == 0 {
			ch.SetCurrent = &ch.Put[0].UID
		}
		if err := s.Apply(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
	}
}

// heap returns the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStoreOpenLoad measures start-up on stores of 1k, 10k and 100k
// accounts: OpenBadger and LoadPages of every record (kept, as a caller
// would), per op; the live heap this leaves per account (the open store
// and the records, after a collection: runtime.MemStats.HeapAlloc delta),
// how much of it is beyond the record's own payload (its tokens, UID and
// Data), and the longest a caller spends on one page (installing it into
// a map, as the AuthStore actor does) against installing all records in
// one go. The pigeon= rows measure the same start-up through the client:
// NewAuthorized on the store until CurrentAuth answers (the AuthStore
// actor has loaded and installed every account), and the heap the open
// client keeps per account.
func BenchmarkStoreOpenLoad(b *testing.B) {
	sizes := []int{1_000, 10_000, 100_000}
	dirs := make(map[int]string)
	for _, n := range sizes {
		dirs[n] = filepath.Join(b.TempDir(), fmt.Sprint("store-", n))
		fillStore(b, dirs[n], n)
	}
	recPayload := payload(storeRecord("u000000", 1))
	for _, n := range sizes {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			var heapPerAcct, maxPage, whole float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				before := heap()
				b.StartTimer()
				s, err := persistence.OpenBadger(dirs[n], persistence.WithEncryptionKey(storeKey))
				if err != nil {
					b.Fatal(err)
				}
				var recs []messages.AuthRecord
				cur, err := s.LoadPages(context.Background(), 0, func(p []messages.AuthRecord) error {
					recs = append(recs, p...)
					return nil
				})
				b.StopTimer()
				if err != nil || len(recs) != n || cur != "u000000" {
					b.Fatalf("loaded %d records (current %q): %v", len(recs), cur, err)
				}
				heapPerAcct = float64(heap()-before) / float64(n)
				maxPage, whole = installTimes(recs)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				runtime.KeepAlive(recs)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/account")
			b.ReportMetric(heapPerAcct, "heapB/account")
			b.ReportMetric(heapPerAcct-float64(recPayload), "beyondPayloadB/account")
			b.ReportMetric(maxPage, "maxPage-µs")
			b.ReportMetric(whole, "wholeInstall-µs")
		})
		b.Run(fmt.Sprintf("pigeon=NewAuthorized+CurrentAuth,accounts=%d", n), func(b *testing.B) {
			var heapPerAcct float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				before := heap()
				b.StartTimer()
				p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithStoreDir(dirs[n]), pigeon.WithEncryptionKey(storeKey))
				if err != nil {
					b.Fatal(err)
				}
				r, err := p.CurrentAuth(context.Background()) // answered once the actor has loaded the store
				b.StopTimer()
				if err != nil || r.UID != "u000000" {
					b.Fatalf("CurrentAuth = %q, %v", r.UID, err)
				}
				heapPerAcct = float64(heap()-before) / float64(n)
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/account")
			b.ReportMetric(heapPerAcct, "heapB/account")
			b.ReportMetric(heapPerAcct-float64(recPayload), "beyondPayloadB/account")
		})
	}
}

// installTimes installs recs into a map of accounts (a deep copy each, as
// the AuthStore actor does) page by page and returns the longest page's
// time, then all at once and returns that time (µs).
func installTimes(recs []messages.AuthRecord) (maxPage, whole float64) {
	type account struct {
		rec messages.AuthRecord
		gen uint64 // the session generation the actor keeps beside each record
	}
	m := make(map[string]*account)
	for p := recs; len(p) > 0; {
		page := p[:min(persistence.DefaultPageSize, len(p))]
		p = p[len(page):]
		start := time.Now()
		for _, r := range page {
			m[r.UID] = &account{rec: r.Clone(), gen: 1}
		}
		maxPage = max(maxPage, float64(time.Since(start).Microseconds()))
	}
	m = make(map[string]*account)
	start := time.Now()
	for _, r := range recs {
		m[r.UID] = &account{rec: r.Clone(), gen: 1}
	}
	return maxPage, float64(time.Since(start).Microseconds())
}
