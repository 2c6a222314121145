package persistence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// markerName is the file, inside the data directory, that says the store
// holds at least one account. It lives outside badger on purpose: what it
// guards against is badger losing track of its own files (a deleted or
// truncated MANIFEST makes badger open an empty database and delete the
// tables it no longer knows), and a record kept in badger would be lost
// with them.
const markerName = "PIGEON-HOLDS-ACCOUNTS"

const markerText = "This pigeon store holds accounts. If it opens empty, its files were damaged: pigeon refuses to open it.\n"

// marker keeps markerName in step with the store: set after a commit that
// leaves records, cleared before one that leaves none (so a crash can
// leave records without a marker, never a marker without records). It is
// used by the committer's goroutine, and by OpenBadger before that starts.
type marker struct {
	path    string
	present bool
}

func openMarker(dir string) (*marker, error) {
	m := &marker{path: filepath.Join(dir, markerName)}
	_, err := os.Stat(m.path)
	switch {
	case err == nil:
		m.present = true
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	}
	return m, nil
}

// set writes the marker (synced) unless it is there.
func (m *marker) set() error {
	if m.present {
		return nil
	}
	dir := filepath.Dir(m.path)
	tmp, err := os.CreateTemp(dir, markerName+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, err = tmp.WriteString(markerText)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), m.path)
	}
	if err != nil {
		return err
	}
	syncDir(dir)
	m.present = true
	return nil
}

// clear removes the marker (the removal synced) if it is there.
func (m *marker) clear() error {
	if !m.present {
		return nil
	}
	if err := os.Remove(m.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pigeon/persistence: store %q: %v: %w", filepath.Dir(m.path), err, ErrStoreUnavailable)
	}
	syncDir(filepath.Dir(m.path))
	m.present = false
	return nil
}

// holdsRecords reports whether txn sees at least one record.
func holdsRecords(txn *badger.Txn) bool {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(recPrefix)})
	defer it.Close()
	it.Rewind()
	return it.Valid()
}

// checkMarker refuses a store whose marker says it held accounts but that
// reads empty; a store that holds records gets its marker (stores written
// before the marker existed).
func checkMarker(dir string, db *badger.DB, m *marker) error {
	var holds bool
	if err := db.View(func(txn *badger.Txn) error { holds = holdsRecords(txn); return nil }); err != nil {
		return err
	}
	switch {
	case holds:
		_ = m.set() // retried at the next commit
	case m.present:
		return damaged(dir, "it held accounts (file "+markerName+") but opens empty: its MANIFEST or tables were lost")
	}
	return nil
}

// damaged is the error of a store whose files are damaged.
func damaged(dir, why string) error {
	return fmt.Errorf("pigeon/persistence: store %q is damaged: %s; nothing was changed: "+
		"restore the directory from a backup, or move it away to start with an empty store (every account signed out): %w",
		dir, why, ErrCorrupt)
}

// commitError turns badger's write errors into the store's sentinels.
func commitError(dir string, err error) error {
	switch {
	case isNoSpace(err):
		return fmt.Errorf("pigeon/persistence: store %q is full: %v: %w", dir, err, ErrStoreFull)
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EIO):
		return fmt.Errorf("pigeon/persistence: store %q cannot be written: %v: %w", dir, err, ErrStoreUnavailable)
	}
	return err
}
