package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/apppigeon/pigeon"
)

// BenchmarkAuthCurrent compares reading the current account through the
// AuthStore actor (CurrentAuth: one ask round trip) with the raw baseline:
// a plain map behind a mutex.
func BenchmarkAuthCurrent(b *testing.B) {
	b.Run("baseline=map+mutex", func(b *testing.B) {
		var mu sync.RWMutex
		m := map[string]pigeon.AuthRecord{"u1": {UID: "u1", AccessToken: "a", RefreshToken: "r"}}
		cur := "u1"
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			mu.RLock()
			r := m[cur]
			mu.RUnlock()
			if r.UID == "" {
				b.Fatal("missing")
			}
		}
	})
	b.Run("pigeon=CurrentAuth", func(b *testing.B) {
		p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore())
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u1", AccessToken: "a", RefreshToken: "r"}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := p.CurrentAuth(ctx)
			if err != nil || r.UID == "" {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAuthSaveSynced measures SaveNewAuth on the encrypted badger
// store: one synced transaction per save, acknowledged after the sync.
func BenchmarkAuthSaveSynced(b *testing.B) {
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{},
		pigeon.WithStoreDir(b.TempDir()+"/store"), pigeon.WithEncryptionKey(make([]byte, 32)))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u1", AccessToken: fmt.Sprint("a", i), RefreshToken: fmt.Sprint("r", i)})
		if err != nil {
			b.Fatal(err)
		}
	}
}
