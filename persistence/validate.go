package persistence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2"
)

// checkFiles looks at the files of the store in dir before badger opens
// it, because badger does not turn every damaged file into an error:
//
//   - a table (".sst") it cannot parse panics in one of badger's
//     goroutines, which kills the process (no recover can reach it);
//   - a table whose checksum does not match is skipped with a log line,
//     its records silently gone;
//   - with the MANIFEST deleted or cut short, badger starts a new one and
//     deletes every table the new one does not list: all accounts gone,
//     the files too;
//   - with the KEYREGISTRY deleted, badger starts a new registry, and no
//     encrypted file can be read any more.
//
// checkFiles refuses each of these with an error matching ErrCorrupt that
// names the directory and what to do (see damaged), and changes nothing
// on disk. It reads every table listed in the MANIFEST whole and verifies
// its checksums (opening one table at a time, in memory), so it costs
// about one read of the store. A directory without badger files (a new
// store) passes.
func checkFiles(dir string, bo badger.Options) error {
	names, err := readDirNames(dir)
	if err != nil {
		return fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	}
	var hasRegistry, hasManifest, hasLogs bool
	var tables []string
	for _, n := range names {
		switch {
		case n == badger.KeyRegistryFileName:
			hasRegistry = true
		case n == badger.ManifestFilename:
			hasManifest = true
		case strings.HasSuffix(n, ".sst"):
			tables = append(tables, n)
		case strings.HasSuffix(n, ".vlog"), strings.HasSuffix(n, ".mem"):
			hasLogs = true
		}
	}
	if !hasRegistry && (hasManifest || hasLogs || len(tables) > 0) {
		return damaged(dir, "its "+badger.KeyRegistryFileName+" (the registry of its data keys) is missing")
	}
	if !hasManifest {
		if len(tables) > 0 {
			return damaged(dir, fmt.Sprintf("its %s is missing and %d table files would be lost", badger.ManifestFilename, len(tables)))
		}
		return nil
	}
	mf, err := readManifest(dir, bo)
	if err != nil {
		return err
	}
	if len(mf.Tables) == 0 {
		return nil
	}
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{
		Dir:                           dir,
		ReadOnly:                      true,
		EncryptionKey:                 bo.EncryptionKey,
		EncryptionKeyRotationDuration: bo.EncryptionKeyRotationDuration,
	})
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return wrongKey(dir)
		}
		return damaged(dir, fmt.Sprintf("its %s cannot be read (%v)", badger.KeyRegistryFileName, err))
	}
	defer kr.Close()
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{NumCounters: 1000, MaxCost: 1 << 20, BufferItems: 64})
	if err != nil {
		return fmt.Errorf("pigeon/persistence: store %q: %w", dir, err)
	}
	defer cache.Close()
	for id, tm := range mf.Tables {
		if err := checkTable(dir, bo, kr, cache, id, tm); err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// readManifest replays the MANIFEST as badger will and refuses one that
// does not end with a complete change (badger would cut it there and
// delete the tables the rest listed). badger appends each change with one
// write, so a killed process does not leave half a change.
func readManifest(dir string, bo badger.Options) (badger.Manifest, error) {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	}
	var mf badger.Manifest
	var end int64
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		mf, end, err = badger.ReplayManifestFile(f, bo.ExternalMagicVersion, bo)
	}()
	switch {
	case err != nil:
		return badger.Manifest{}, damaged(dir, fmt.Sprintf("its %s cannot be read (%v)", badger.ManifestFilename, err))
	case end != fi.Size():
		return badger.Manifest{}, damaged(dir, fmt.Sprintf("its %s is cut short or garbled after byte %d of %d",
			badger.ManifestFilename, end, fi.Size()))
	}
	return mf, nil
}

// checkTable reads table id whole and verifies it, recovering from the
// panics badger's table code answers some damage with.
func checkTable(dir string, bo badger.Options, kr *badger.KeyRegistry, cache *ristretto.Cache[uint64, *fb.TableIndex],
	id uint64, tm badger.TableManifest) (err error) {
	name := table.IDToFilename(id)
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return damaged(dir, fmt.Sprintf("table %s listed in its %s is missing", name, badger.ManifestFilename))
	}
	if err != nil {
		return fmt.Errorf("pigeon/persistence: store %q: %v: %w", dir, err, ErrStoreUnavailable)
	}
	dk, err := kr.DataKey(tm.KeyID)
	if err != nil {
		return damaged(dir, fmt.Sprintf("the data key of table %s is not in its %s (%v)", name, badger.KeyRegistryFileName, err))
	}
	defer func() {
		if r := recover(); r != nil {
			err = damaged(dir, fmt.Sprintf("table %s cannot be read (%v)", name, r))
		}
	}()
	t, err := table.OpenInMemoryTable(data, id, &table.Options{
		ChkMode:     options.OnTableRead,
		Compression: tm.Compression,
		DataKey:     dk,
		BlockSize:   bo.BlockSize,
		IndexCache:  cache,
	})
	if err != nil {
		return damaged(dir, fmt.Sprintf("table %s cannot be read (%v)", name, err))
	}
	defer func() { _ = t.DecrRef() }()
	if err := t.VerifyChecksum(); err != nil {
		return damaged(dir, fmt.Sprintf("table %s fails its checksum (%v)", name, err))
	}
	return nil
}
