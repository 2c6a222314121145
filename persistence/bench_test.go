package persistence

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/apppigeon/pigeon/messages"
)

// BenchmarkBadger_OpenLoadClose measures reopening a small encrypted store
// (3 accounts) and loading it.
func BenchmarkBadger_OpenLoadClose(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "store")
	s, err := OpenBadger(dir, WithEncryptionKey(testKey))
	if err != nil {
		b.Fatal(err)
	}
	cur := "alice"
	if err := s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("alice", 1), rec("bob", 1), rec("carol", 1)}, SetCurrent: &cur}); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := OpenBadger(dir, WithEncryptionKey(testKey))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Load(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBadger_ApplySynced measures one synced Apply rotating one
// account's tokens.
func BenchmarkBadger_ApplySynced(b *testing.B) {
	s, err := OpenBadger(filepath.Join(b.TempDir(), "store"), WithEncryptionKey(testKey))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := 0
	for b.Loop() {
		n++
		if err := s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("alice", n)}}); err != nil {
			b.Fatal(err)
		}
	}
}
