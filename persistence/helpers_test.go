package persistence

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// testKey is a fixed AES-256 key for tests that do not test key handling.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// storeFactory opens a fresh, empty Store that is closed at the end of t.
type storeFactory struct {
	name string
	open func(t *testing.T) Store
}

func factories() []storeFactory {
	return []storeFactory{
		{name: "memory", open: func(t *testing.T) Store {
			s := NewMemory()
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{name: "badger", open: func(t *testing.T) Store {
			return openBadger(t, filepath.Join(t.TempDir(), "store"), WithEncryptionKey(testKey))
		}},
	}
}

// openBadger opens a BadgerStore that is closed at the end of t.
func openBadger(t *testing.T, dir string, opts ...Option) *BadgerStore {
	t.Helper()
	s, err := OpenBadger(dir, opts...)
	if err != nil {
		t.Fatalf("OpenBadger(%q): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rec builds a complete record whose every field carries n.
func rec(uid string, n int) messages.AuthRecord {
	base := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	return messages.AuthRecord{
		UID:          uid,
		AccessToken:  messages.Secret(fmt.Sprintf("a-%s-%d", uid, n)),
		RefreshToken: messages.Secret(fmt.Sprintf("r-%s-%d", uid, n)),
		ExpiresAt:    base.Add(time.Duration(n) * time.Hour),
		IssuedAt:     base.Add(time.Duration(n) * time.Minute).In(time.FixedZone("X", 3600)),
		Data:         json.RawMessage(fmt.Sprintf(`{"n": %d}`, n)),
	}
}

// randomToken returns a long random token (64 random bytes, base64).
func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func strp(s string) *string { return &s }

// diffState describes how got differs from want ("" = equal). Times are
// compared as instants, Data byte for byte.
func diffState(got, want State) string {
	var b strings.Builder
	if got.Current != want.Current {
		fmt.Fprintf(&b, "Current = %q, want %q\n", got.Current, want.Current)
	}
	if len(got.Records) != len(want.Records) {
		fmt.Fprintf(&b, "%d records %v, want %d %v\n", len(got.Records), uids(got.Records), len(want.Records), uids(want.Records))
		return b.String()
	}
	for i := range got.Records {
		if d := diffRecord(got.Records[i], want.Records[i]); d != "" {
			fmt.Fprintf(&b, "record %d: %s\n", i, d)
		}
	}
	return b.String()
}

func diffRecord(g, w messages.AuthRecord) string {
	var b strings.Builder
	if g.UID != w.UID {
		fmt.Fprintf(&b, "UID %q want %q; ", g.UID, w.UID)
	}
	if string(g.AccessToken) != string(w.AccessToken) {
		fmt.Fprintf(&b, "AccessToken %q want %q; ", string(g.AccessToken), string(w.AccessToken))
	}
	if string(g.RefreshToken) != string(w.RefreshToken) {
		fmt.Fprintf(&b, "RefreshToken %q want %q; ", string(g.RefreshToken), string(w.RefreshToken))
	}
	if !g.ExpiresAt.Equal(w.ExpiresAt) {
		fmt.Fprintf(&b, "ExpiresAt %v want %v; ", g.ExpiresAt, w.ExpiresAt)
	}
	if !g.IssuedAt.Equal(w.IssuedAt) {
		fmt.Fprintf(&b, "IssuedAt %v want %v; ", g.IssuedAt, w.IssuedAt)
	}
	if !bytes.Equal(g.Data, w.Data) {
		fmt.Fprintf(&b, "Data %q want %q; ", g.Data, w.Data)
	}
	return b.String()
}

func uids(rs []messages.AuthRecord) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.UID
	}
	return out
}

func mustLoad(t *testing.T, s Store) State {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

func mustApply(t *testing.T, s Store, ch Change) {
	t.Helper()
	if err := s.Apply(context.Background(), ch); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}
