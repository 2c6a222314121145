package persistence

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// KeyError reports a malformed encryption key. It matches ErrInvalidKey
// with errors.Is. It never holds the key or any part of it. Safe for
// concurrent reads.
type KeyError struct {
	Source string // where the key came from: "WithEncryptionKey", "PIGEON_STORE_KEY" or the key file's path
	Reason string // what is wrong, e.g. "20 bytes, want 16, 24 or 32"
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("pigeon/persistence: invalid encryption key from %s: %s", e.Source, e.Reason)
}

// Is reports whether target is ErrInvalidKey.
func (e *KeyError) Is(target error) bool { return target == ErrInvalidKey }

func checkKeyLen(source string, n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return &KeyError{Source: source, Reason: fmt.Sprintf("%d bytes, want 16, 24 or 32", n)}
}

// decodeKey decodes base64 (standard alphabet, padded or not) and checks the
// length. Errors never contain the input.
func decodeKey(source, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, &KeyError{Source: source, Reason: "not valid base64"}
	}
	if err := checkKeyLen(source, len(k)); err != nil {
		return nil, err
	}
	return k, nil
}

// DefaultKeyFile returns where OpenBadger keeps the generated key of the
// store in dir: "<dir>.key", beside the data directory. Safe for
// concurrent use.
func DefaultKeyFile(dir string) string {
	return filepath.Clean(dir) + ".key"
}

// resolveKey finds the encryption key: WithEncryptionKey, else
// PIGEON_STORE_KEY, else the key file (created on first use). nil means no
// encryption.
func resolveKey(dir string, c *config) ([]byte, error) {
	if c.noEncryption {
		return nil, nil
	}
	if c.keySet {
		if err := checkKeyLen("WithEncryptionKey", len(c.key)); err != nil {
			return nil, err
		}
		return c.key, nil
	}
	getenv := c.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := strings.TrimSpace(getenv(EnvKey)); v != "" {
		return decodeKey(EnvKey, v)
	}
	path := c.keyFile
	if path == "" {
		path = DefaultKeyFile(dir)
	}
	if err := checkOutside(dir, path); err != nil {
		return nil, err
	}
	return loadOrCreateKeyFile(dir, path)
}

// checkOutside fails if the key file would live inside the data directory.
func checkOutside(dir, keyPath string) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("pigeon/persistence: store directory %q: %w", dir, err)
	}
	absKey, err := filepath.Abs(keyPath)
	if err != nil {
		return fmt.Errorf("pigeon/persistence: key file %q: %w", keyPath, err)
	}
	rel, err := filepath.Rel(absDir, absKey)
	if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("pigeon/persistence: key file %q is inside the store directory %q; keep it beside, not inside", keyPath, dir)
	}
	return nil
}

// loadOrCreateKeyFile reads the key file at path, or creates it with a new
// random 32-byte key (mode 0600) if it does not exist.
func loadOrCreateKeyFile(dir, path string) ([]byte, error) {
	k, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if _, err := os.Stat(filepath.Join(dir, badger.KeyRegistryFileName)); err == nil {
		return nil, fmt.Errorf("pigeon/persistence: store %q exists but its key file %q is missing: "+
			"set %s or use WithEncryptionKey with the key the store was created with: %w", dir, path, EnvKey, ErrWrongKey)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("pigeon/persistence: generating a key: %w", err)
	}
	if err := writeKeyFile(path, key); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another opener created it first: use theirs.
			return readKeyFile(path)
		}
		return nil, err
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("pigeon/persistence: key file: %w", err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pigeon/persistence: key file %q is accessible by others (mode %#o): run chmod 600 on it", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pigeon/persistence: key file: %w", err)
	}
	return decodeKey(path, string(b))
}

// writeKeyFile writes key to path atomically: a fully written, synced
// temporary file is hard-linked into place, which fails with fs.ErrExist
// if path exists. A crash never leaves a partial key file.
func writeKeyFile(path string, key []byte) error {
	parent := filepath.Dir(path)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("pigeon/persistence: key file directory: %w", err)
	}
	tmp, err := os.CreateTemp(parent, filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return fmt.Errorf("pigeon/persistence: key file: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pigeon/persistence: writing key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("pigeon/persistence: creating key file %q: %w", path, err)
	}
	syncDir(parent)
	return nil
}

// syncDir makes a new directory entry durable (best effort: not every
// platform can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// checkRegistry tells whether key opens the store in dir, before badger
// opens it: badger leaks a goroutine when it fails on a wrong key. It reads
// badger's key registry header (16-byte IV, then the sanity text
// encrypted with the key in AES-CTR mode, or plain without encryption).
// A missing or short registry is left to badger.
func checkRegistry(dir string, key []byte) error {
	f, err := os.Open(filepath.Join(dir, badger.KeyRegistryFileName))
	if err != nil {
		return nil
	}
	defer f.Close()
	sanity := []byte("Hello Badger")
	buf := make([]byte, aes.BlockSize+len(sanity))
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil
	}
	iv, text := buf[:aes.BlockSize], buf[aes.BlockSize:]
	if len(key) > 0 {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil // badger reports it
		}
		cipher.NewCTR(block, iv).XORKeyStream(text, text)
	}
	if !bytes.Equal(text, sanity) {
		return wrongKey(dir)
	}
	return nil
}

func wrongKey(dir string) error {
	return fmt.Errorf("pigeon/persistence: cannot open store %q: it was created with another encryption key "+
		"(or with encryption set differently); use the key it was created with or another directory: %w", dir, ErrWrongKey)
}
