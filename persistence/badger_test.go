package persistence

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/apppigeon/pigeon/messages"
)

// noEnv is a getenv that has no PIGEON_STORE_KEY, so tests never depend on
// the real environment.
func noEnv(string) string { return "" }

func envWith(key []byte) func(string) string {
	return func(name string) string {
		if name == EnvKey {
			return base64.StdEncoding.EncodeToString(key)
		}
		return ""
	}
}

// TestBadger_ReopenReturnsEverything: a reopened store (same dir, same key)
// holds every record field and the current account.
func TestBadger_ReopenReturnsEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	a, b := rec("alice", 7), rec("bob", 3)
	b.Data = json.RawMessage(`{"roles": ["admin"],  "name":"Bob"}`)
	want := State{Records: []messages.AuthRecord{a, b}, Current: "bob"}

	s := openBadger(t, dir, WithGetenv(noEnv))
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1), b, rec("carol", 1)}, SetCurrent: strp("alice")})
	mustApply(t, s, Change{Put: []messages.AuthRecord{a}, Delete: []string{"carol"}, SetCurrent: strp("bob")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openBadger(t, dir, WithGetenv(noEnv))
	if d := diffState(mustLoad(t, s2), want); d != "" {
		t.Errorf("after reopen:\n%s", d)
	}
}

// TestBadger_NoPlaintextOnDisk: no file in the data directory contains a
// saved token, while open and after Close. The control run without
// encryption finds them, so the search can fail.
func TestBadger_NoPlaintextOnDisk(t *testing.T) {
	cases := []struct {
		name      string
		opts      []Option
		wantFound bool
	}{
		{name: "encrypted (default key file)", opts: []Option{WithGetenv(noEnv)}, wantFound: false},
		{name: "encrypted (explicit key)", opts: []Option{WithEncryptionKey(testKey)}, wantFound: false},
		{name: "control: unencrypted", opts: []Option{WithoutEncryption()}, wantFound: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s := openBadger(t, dir, tc.opts...)
			var tokens []string
			for n := range 20 {
				r := rec("alice", n)
				r.AccessToken, r.RefreshToken = messages.Secret(randomToken(t)), messages.Secret(randomToken(t))
				tokens = append(tokens, string(r.AccessToken), string(r.RefreshToken))
				mustApply(t, s, Change{Put: []messages.AuthRecord{r}, SetCurrent: strp("alice")})
			}
			if got := anyFileContains(t, dir, tokens); got != tc.wantFound {
				t.Errorf("while open: a token found on disk = %v, want %v", got, tc.wantFound)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := anyFileContains(t, dir, tokens); got != tc.wantFound {
				t.Errorf("after Close: a token found on disk = %v, want %v", got, tc.wantFound)
			}
		})
	}
}

// anyFileContains walks every file under dir and reports whether one holds
// any of needles.
func anyFileContains(t *testing.T, dir string, needles []string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Logf("%s holds a token", filepath.Base(path))
				found = true
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestBadger_WrongKey: opening with another key (or encryption set
// differently) fails with ErrWrongKey naming the directory, and the store
// stays readable with the right key.
func TestBadger_WrongKey(t *testing.T) {
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	cases := []struct {
		name        string
		create, use []Option
	}{
		{name: "other key", create: []Option{WithEncryptionKey(testKey)}, use: []Option{WithEncryptionKey(otherKey)}},
		{name: "other key size", create: []Option{WithEncryptionKey(testKey)}, use: []Option{WithEncryptionKey(otherKey[:16])}},
		{name: "env key differs from key file", create: []Option{WithGetenv(noEnv)}, use: []Option{WithGetenv(envWith(otherKey))}},
		{name: "encrypted store opened unencrypted", create: []Option{WithEncryptionKey(testKey)}, use: []Option{WithoutEncryption()}},
		{name: "unencrypted store opened encrypted", create: []Option{WithoutEncryption()}, use: []Option{WithEncryptionKey(testKey)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s := openBadger(t, dir, tc.create...)
			mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1)}})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2, err := OpenBadger(dir, tc.use...)
			if !errors.Is(err, ErrWrongKey) {
				_ = closeIfOpen(s2)
				t.Fatalf("OpenBadger with the wrong key = %v, want ErrWrongKey", err)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the directory", err)
			}
			s3 := openBadger(t, dir, tc.create...)
			if d := diffState(mustLoad(t, s3), State{Records: []messages.AuthRecord{rec("alice", 1)}}); d != "" {
				t.Errorf("after a failed open with the wrong key:\n%s", d)
			}
		})
	}
}

func closeIfOpen(s *BadgerStore) error {
	if s == nil {
		return nil
	}
	return s.Close()
}

// TestBadger_OpenErrorMapping: badger's own wrong-key and lock errors
// (reached only if the pre-checks miss) map to this package's sentinels.
func TestBadger_OpenErrorMapping(t *testing.T) {
	cases := []struct {
		name string
		in   error
		want error
	}{
		{name: "key mismatch", in: badger.ErrEncryptionKeyMismatch, want: ErrWrongKey},
		{name: "invalid key length", in: badger.ErrInvalidEncryptionKey, want: ErrInvalidKey},
		{name: "lock", in: errors.New(`Cannot acquire directory lock on "/x".  ` + lockMessage + `. err: resource temporarily unavailable`), want: ErrLocked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := openError("/some/dir", tc.in); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "/some/dir") {
				t.Errorf("openError = %v, want %v naming the directory", err, tc.want)
			}
		})
	}
}

// TestBadger_Locked: a second open of a directory that is open fails with
// ErrLocked, naming the directory and the way out; it opens once the first
// store is closed.
func TestBadger_Locked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	s2, err := OpenBadger(dir, WithEncryptionKey(testKey))
	if !errors.Is(err, ErrLocked) {
		_ = closeIfOpen(s2)
		t.Fatalf("second OpenBadger = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "close the other", "another directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openBadger(t, dir, WithEncryptionKey(testKey))
}

// TestBadger_KeyFile: without an explicit or env key, a 32-byte key is
// generated into a 0600 file beside (not inside) the 0700 data directory,
// and reused by later opens.
func TestBadger_KeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithGetenv(noEnv))
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1)}, SetCurrent: strp("alice")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	keyPath := dir + ".key"
	if DefaultKeyFile(dir) != keyPath {
		t.Errorf("DefaultKeyFile = %q, want %q", DefaultKeyFile(dir), keyPath)
	}
	info, err := os.Stat(keyPath)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %#o, want 0600", info.Mode().Perm())
	}
	dinfo, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dinfo.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %#o, want 0700", dinfo.Mode().Perm())
	}
	b, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		t.Fatalf("key file holds %d bytes (err %v), want 32 base64", len(key), err)
	}
	want := State{Records: []messages.AuthRecord{rec("alice", 1)}, Current: "alice"}

	// Reused: a second default open reads the data, the file is unchanged.
	s2 := openBadger(t, dir, WithGetenv(noEnv))
	if d := diffState(mustLoad(t, s2), want); d != "" {
		t.Errorf("reopen with the key file:\n%s", d)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if b2, err := os.ReadFile(keyPath); err != nil || !bytes.Equal(b, b2) {
		t.Errorf("key file changed on reopen (err %v)", err)
	}
	// It is the key: the same bytes given explicitly open the store.
	s3 := openBadger(t, dir, WithEncryptionKey(key))
	if d := diffState(mustLoad(t, s3), want); d != "" {
		t.Errorf("open with the key file's key:\n%s", d)
	}
}

// TestBadger_KeyFileProblems: a missing key file for an existing store, a
// key file others can read, and a key file inside the data dir are clear
// errors.
func TestBadger_KeyFileProblems(t *testing.T) {
	t.Run("missing for an existing store", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		s := openBadger(t, dir, WithGetenv(noEnv))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(dir + ".key"); err != nil {
			t.Fatal(err)
		}
		s2, err := OpenBadger(dir, WithGetenv(noEnv))
		if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), dir+".key") {
			_ = closeIfOpen(s2)
			t.Fatalf("OpenBadger = %v, want ErrWrongKey naming the key file", err)
		}
		if _, err := os.Stat(dir + ".key"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a new key file was generated for an existing store (stat: %v)", err)
		}
	})
	t.Run("readable by others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		s := openBadger(t, dir, WithGetenv(noEnv))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir+".key", 0o644); err != nil {
			t.Fatal(err)
		}
		s2, err := OpenBadger(dir, WithGetenv(noEnv))
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			_ = closeIfOpen(s2)
			t.Fatalf("OpenBadger = %v, want an error asking for chmod 600", err)
		}
	})
	t.Run("inside the data dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		s, err := OpenBadger(dir, WithGetenv(noEnv), WithKeyFile(filepath.Join(dir, "key")))
		if err == nil || !strings.Contains(err.Error(), "inside the store directory") {
			_ = closeIfOpen(s)
			t.Fatalf("OpenBadger = %v, want a key-inside-dir error", err)
		}
	})
	t.Run("custom key file", func(t *testing.T) {
		root := t.TempDir()
		dir, keyPath := filepath.Join(root, "store"), filepath.Join(root, "keys", "pigeon.key")
		s := openBadger(t, dir, WithGetenv(noEnv), WithKeyFile(keyPath))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(keyPath); err != nil {
			t.Errorf("custom key file: %v", err)
		}
		if _, err := os.Stat(dir + ".key"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("default key file created too (stat: %v)", err)
		}
	})
}

// TestBadger_EnvKey: PIGEON_STORE_KEY (through the injected getenv) is the
// key when no explicit key is given; no key file is created; an explicit
// key wins over it.
func TestBadger_EnvKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	envKey := []byte("env-key-env-key-env-key-")
	s := openBadger(t, dir, WithGetenv(envWith(envKey)))
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1)}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + ".key"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key file created although PIGEON_STORE_KEY was set (stat: %v)", err)
	}
	s2 := openBadger(t, dir, WithEncryptionKey(envKey), WithGetenv(envWith(testKey)))
	if d := diffState(mustLoad(t, s2), State{Records: []messages.AuthRecord{rec("alice", 1)}}); d != "" {
		t.Errorf("open with the env key given explicitly:\n%s", d)
	}
}

// TestBadger_InvalidKeys: bad key sizes, bad base64 and conflicting options
// are errors (ErrInvalidKey for malformed keys) that never show the key.
func TestBadger_InvalidKeys(t *testing.T) {
	badB64 := "not*base64*at*all*0123456789"
	short := base64.StdEncoding.EncodeToString([]byte("twenty-bytes-long!!!"))
	cases := []struct {
		name    string
		opts    []Option
		keyFile string // written beside the dir before opening, when not ""
		wantErr error
		secret  string // must not appear in the error
	}{
		{name: "explicit 15 bytes", opts: []Option{WithEncryptionKey([]byte("fifteen-bytes!!"))}, wantErr: ErrInvalidKey, secret: "fifteen-bytes!!"},
		{name: "explicit 33 bytes", opts: []Option{WithEncryptionKey(append(testKey, 'x'))}, wantErr: ErrInvalidKey, secret: string(testKey)},
		{name: "explicit empty", opts: []Option{WithEncryptionKey(nil)}, wantErr: ErrInvalidKey},
		{name: "env not base64", opts: []Option{WithGetenv(func(string) string { return badB64 })}, wantErr: ErrInvalidKey, secret: badB64},
		{name: "env 20 bytes", opts: []Option{WithGetenv(func(string) string { return short })}, wantErr: ErrInvalidKey, secret: short},
		{name: "key file not base64", opts: []Option{WithGetenv(noEnv)}, keyFile: badB64, wantErr: ErrInvalidKey, secret: badB64},
		{name: "key file 20 bytes", opts: []Option{WithGetenv(noEnv)}, keyFile: short, wantErr: ErrInvalidKey, secret: short},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if tc.keyFile != "" {
				if err := os.WriteFile(dir+".key", []byte(tc.keyFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := OpenBadger(dir, tc.opts...)
			if !errors.Is(err, tc.wantErr) {
				_ = closeIfOpen(s)
				t.Fatalf("OpenBadger = %v, want %v", err, tc.wantErr)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}

// TestBadger_BadArguments: an empty dir and conflicting options are errors.
func TestBadger_BadArguments(t *testing.T) {
	cases := []struct {
		name string
		dir  string
		opts []Option
	}{
		{name: "empty dir", dir: ""},
		{name: "key and no encryption", dir: filepath.Join(t.TempDir(), "s"), opts: []Option{WithEncryptionKey(testKey), WithoutEncryption()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenBadger(tc.dir, tc.opts...)
			if err == nil || !strings.HasPrefix(err.Error(), "pigeon/persistence: ") {
				_ = closeIfOpen(s)
				t.Fatalf("OpenBadger = %v, want a pigeon/persistence error", err)
			}
		})
	}
}

// TestBadger_CorruptValue: a stored value that cannot be decoded (bad JSON,
// unknown schema version, UID mismatch, bad current pointer) fails Load
// with a DecodeError naming the key; nothing is dropped silently.
func TestBadger_CorruptValue(t *testing.T) {
	cases := []struct {
		name, key, value string
	}{
		{name: "not JSON", key: "rec/alice", value: "garbage"},
		{name: "future schema version", key: "rec/alice", value: `{"v":2,"uid":"alice"}`},
		{name: "missing schema version", key: "rec/alice", value: `{"uid":"alice"}`},
		{name: "UID differs from key", key: "rec/alice", value: `{"v":1,"uid":"bob"}`},
		{name: "current pointer not JSON", key: "meta/current", value: "garbage"},
		{name: "current names no record", key: "meta/current", value: `{"v":1,"uid":"nobody"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s := openBadger(t, dir, WithEncryptionKey(testKey))
			mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1), rec("bob", 1)}, SetCurrent: strp("alice")})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			writeRaw(t, dir, tc.key, tc.value)

			s2 := openBadger(t, dir, WithEncryptionKey(testKey))
			_, err := s2.Load(context.Background())
			var de *DecodeError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &de) || de.Key != tc.key || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("Load = %v, want a DecodeError naming %q", err, tc.key)
			}
		})
	}
}

// writeRaw writes one raw key/value with badger directly.
func writeRaw(t *testing.T, dir, key, value string) {
	t.Helper()
	db, err := badger.Open(badgerOptions(dir, testKey, newBadgerLogger(nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), []byte(value)) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestBadger_Logger: what of badger's log reaches WithLogger (Warn and
// above only, see TestBadgerLogger_WarnAndAboveOnly) is named "badger", and
// no entry holds the key or a token.
func TestBadger_Logger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	dir := filepath.Join(t.TempDir(), "store")
	s := openBadger(t, dir, WithEncryptionKey(testKey), WithLogger(zap.New(core)))
	r := rec("alice", 1)
	r.AccessToken = messages.Secret(randomToken(t))
	mustApply(t, s, Change{Put: []messages.AuthRecord{r}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.All() {
		if e.LoggerName != "badger" {
			t.Errorf("entry from logger %q, want badger", e.LoggerName)
		}
		line := e.Message + " " + e.Caller.String()
		for _, secret := range []string{string(testKey), base64.StdEncoding.EncodeToString(testKey), string(r.AccessToken)} {
			if strings.Contains(line, secret) {
				t.Errorf("log entry holds a secret: %q", e.Message)
			}
		}
	}
}

// TestDefaultDir: os.UserConfigDir()/pigeon/<name>, "default" for "";
// names that are not one path element are errors.
func TestDefaultDir(t *testing.T) {
	base, err := os.UserConfigDir()
	if err != nil {
		t.Skipf("no user config dir here: %v", err)
	}
	cases := []struct {
		name    string
		want    string
		wantErr bool
	}{
		{name: "", want: filepath.Join(base, "pigeon", "default")},
		{name: "work", want: filepath.Join(base, "pigeon", "work")},
		{name: "a/b", wantErr: true},
		{name: "..", wantErr: true},
		{name: ".", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultDir(tc.name)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("DefaultDir(%q) = %q, %v; want %q, error %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestMarker_FollowsTheRecords (reliability.md R23): the marker is there
// while the store holds records and gone once a change leaves none, so a
// store emptied on purpose reopens (empty) instead of being refused; a
// store written before the marker existed gets one at open.
func TestMarker_FollowsTheRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	marker := filepath.Join(dir, markerName)
	exists := func() bool {
		_, err := os.Stat(marker)
		return err == nil
	}
	s := openBadger(t, dir, WithEncryptionKey(testKey))
	if exists() {
		t.Fatal("marker in a new store")
	}
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1), rec("bob", 1)}, SetCurrent: strp("alice")})
	if !exists() {
		t.Fatal("no marker after the first records")
	}
	mustApply(t, s, Change{Delete: []string{"alice"}})
	if !exists() {
		t.Fatal("marker gone while bob is stored")
	}
	mustApply(t, s, Change{Delete: []string{"bob"}})
	if exists() {
		t.Fatal("marker left on an empty store")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir, WithEncryptionKey(testKey))
	if st := mustLoad(t, s); len(st.Records) != 0 {
		t.Fatalf("emptied store reopened with %d records", len(st.Records))
	}
	mustApply(t, s, Change{Put: []messages.AuthRecord{rec("carol", 1)}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil { // as a store of an older version
		t.Fatal(err)
	}
	s = openBadger(t, dir, WithEncryptionKey(testKey))
	if !exists() {
		t.Fatal("no marker after opening a store with records")
	}
	if st := mustLoad(t, s); len(st.Records) != 1 {
		t.Fatalf("%d records, want carol", len(st.Records))
	}
}
