package persistence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Why a full disk is an error and not a crash
//
// badger writes its write-ahead log (the active memtable's ".mem" file),
// its value log and its tables through memory maps of files it creates
// sparse (truncated to their final size, no blocks allocated). A store
// from the page cache into a hole of such a file needs a block when the
// page is written back — on tmpfs at once, on ext4 in page_mkwrite — and
// when the file system has none the kernel answers with SIGBUS, which
// kills the process: no error ever reaches badger, let alone the caller.
//
// So the committer asks the spaceGuard before every transaction, and the
// guard makes sure the transaction cannot touch a hole:
//
//   - it allocates (fallocate, FALLOC_FL_KEEP_SIZE) the part of the
//     active write-ahead log the transaction will be written to, with a
//     margin; on ENOSPC the transaction is refused with ErrStoreFull and
//     nothing is written. Allocated blocks stay allocated, so a filler
//     that takes the rest of the disk afterwards cannot fault this write;
//   - a transaction holding values stored in the value log (at or above
//     badger's value threshold) allocates their bytes, with the margin,
//     after the allocated part of the active value log file (badger writes
//     it from the start, in order);
//   - it keeps a free-space reserve: the file system must have at least
//     reserve bytes free (statfs) besides, enough for badger to rotate the
//     memtable (a new log file, written from its first page), to flush the
//     full one into a table and to rotate the value log. Below it the
//     transaction is refused with ErrStoreFull;
//   - a directory that is not writable any more (a read-only mount or
//     bind mount, a mode without write permission) is refused with
//     ErrStoreUnavailable before badger tries to create its next file (at
//     memtable rotation badger would otherwise fail inside its own
//     goroutines).
//
// After the transaction the guard makes it durable (spaceGuard.after):
// badger runs with SyncWrites off and the committer syncs each
// transaction's files once, where badger synced the write-ahead log and
// the value log for every transaction, even one that wrote nothing to the
// value log. That halves the fsyncs of a transaction.
//
// The guard costs a few system calls per transaction, next to the
// transaction's fsync. What it cannot do: stop another process from taking
// the last blocks between its check and a background flush or compaction
// badger starts on its own; the reserve is what makes that unlikely.

// ErrStoreFull and ErrStoreUnavailable are defined here, beside the guard.
var (
	// ErrStoreFull: the store's file system has no room for the change
	// (or would have less than the store's reserve left). Nothing was
	// written and the records stored before are intact; writes work
	// again once space is freed.
	ErrStoreFull = errors.New("pigeon/persistence: store is full")
	// ErrStoreUnavailable: the store's directory cannot be written (a
	// read-only file system, no write permission, an I/O error). Nothing
	// was written; the records stored before are intact and can still be
	// read.
	ErrStoreUnavailable = errors.New("pigeon/persistence: store cannot be written")
)

const (
	// walMargin is allocated beyond the estimate of a transaction's
	// write-ahead log bytes (badger's headers, the transaction marker,
	// rounding).
	walMargin = 64 << 10
	// reserveBase is the free space always kept for badger's own
	// bookkeeping (new log files, the manifest, the discard file).
	reserveBase = 256 << 10
	// walEntryOverhead is badger's per-entry cost in the log beyond key
	// and value: the header (at most 22 bytes), the 8-byte version
	// suffix of the key and the 4-byte checksum.
	walEntryOverhead = 22 + 8 + 4
	// walHeader is the log file's header (key id and IV).
	walHeader = 20
)

// spaceGuard is the committer's check before each transaction and its
// sync after it (see above).
// It is used by the committer's goroutine only.
type spaceGuard struct {
	dir      string
	memTable int64 // badger's MemTableSize: the log rotates at this offset

	wal    *os.File // the active write-ahead log, or nil
	walFid int64
	walOff int64 // estimated write offset in wal
}

func newSpaceGuard(dir string, memTableSize int64) *spaceGuard {
	return &spaceGuard{dir: dir, memTable: memTableSize, walFid: -1}
}

// before readies the store for a transaction of walBytes log bytes
// (walBytes as estimated by walEstimate) and vlogBytes for the value
// log. An error (ErrStoreFull, ErrStoreUnavailable) means the
// transaction must not be committed.
func (g *spaceGuard) before(walBytes, vlogBytes int64) error {
	if err := writable(g.dir); err != nil {
		return fmt.Errorf("pigeon/persistence: store %q cannot be written (%v): "+
			"make the directory writable again; the stored records are intact: %w", g.dir, err, ErrStoreUnavailable)
	}
	if err := g.activeWAL(); err != nil {
		return g.unavailable(err)
	}
	need := walBytes + walMargin
	// A transaction that may fill the memtable makes badger rotate it
	// and flush the full one into a table: keep room for that table (about
	// the log's size) and for the new log's first blocks.
	reserve := int64(reserveBase) + need + vlogBytes
	if g.walOff+need >= g.memTable*3/4 {
		reserve += g.walOff + need
	}
	free, err := freeBytes(g.dir)
	if err != nil {
		return g.unavailable(err)
	}
	if free < reserve {
		return g.full(fmt.Sprintf("%d bytes free, %d needed", free, reserve))
	}
	if g.wal != nil {
		if err := g.allocate(g.wal, g.walOff, need); err != nil {
			return err
		}
	}
	if vlogBytes > 0 {
		if err := g.allocateVlog(vlogBytes + walMargin); err != nil {
			return err
		}
	}
	return nil
}

// after makes the transaction just committed durable and records its
// walBytes. badger runs with SyncWrites off (see badgerOptions), so the
// committer syncs what the transaction wrote, once: the value log files
// when it held values for them (the newest and the one before, in case
// badger started a new one after writing), then the write-ahead log that
// was active before it and, if badger rotated the memtable meanwhile, the
// new one. This is the order badger syncs in with SyncWrites on, where it
// also syncs the value log when nothing went there.
func (g *spaceGuard) after(walBytes int64, vlog bool) error {
	if vlog {
		fid, err := newestFile(g.dir, ".vlog")
		if err != nil {
			return g.unavailable(err)
		}
		for _, f := range []int64{fid - 1, fid} {
			if err := syncFile(filepath.Join(g.dir, fmt.Sprintf("%06d.vlog", f))); err != nil {
				return g.unavailable(err)
			}
		}
	}
	if g.wal != nil {
		if err := g.wal.Sync(); err != nil {
			return g.unavailable(err)
		}
	}
	fid := g.walFid
	if err := g.activeWAL(); err != nil {
		return g.unavailable(err)
	}
	if g.walFid != fid {
		// Rotated: the transaction went to the new log.
		if err := g.wal.Sync(); err != nil {
			return g.unavailable(err)
		}
	}
	g.walOff += walBytes
	return nil
}

// syncFile syncs the file at path if it exists.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// close releases the guard's file.
func (g *spaceGuard) close() {
	if g.wal != nil {
		_ = g.wal.Close()
		g.wal = nil
	}
}

// activeWAL finds badger's active write-ahead log: the ".mem" file with
// the highest number (badger creates a new one at open and at each
// rotation, and writes only to the newest). A new one starts at its
// header.
func (g *spaceGuard) activeWAL() error {
	fid, err := newestFile(g.dir, ".mem")
	if err != nil || fid < 0 || fid == g.walFid {
		return err
	}
	f, err := os.OpenFile(filepath.Join(g.dir, fmt.Sprintf("%05d.mem", fid)), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	g.close()
	g.wal, g.walFid, g.walOff = f, fid, walHeader
	return nil
}

// allocateVlog allocates n bytes of the newest value log file after its
// allocated part.
func (g *spaceGuard) allocateVlog(n int64) error {
	fid, err := newestFile(g.dir, ".vlog")
	if err != nil || fid < 0 {
		return g.unavailable(err)
	}
	f, err := os.OpenFile(filepath.Join(g.dir, fmt.Sprintf("%06d.vlog", fid)), os.O_RDWR, 0)
	if err != nil {
		return g.unavailable(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return g.unavailable(err)
	}
	return g.allocate(f, allocatedBytes(fi), n)
}

// allocate allocates n bytes of f from off, within f's size.
func (g *spaceGuard) allocate(f *os.File, off, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return g.unavailable(err)
	}
	end := min(fi.Size(), off+n)
	if end <= off {
		return nil
	}
	err = preallocate(f, off, end-off)
	switch {
	case err == nil:
		return nil
	case isNoSpace(err):
		return g.full(fmt.Sprintf("cannot allocate %d bytes of %s", end-off, filepath.Base(f.Name())))
	}
	return g.unavailable(err)
}

func (g *spaceGuard) full(why string) error {
	return fmt.Errorf("pigeon/persistence: store %q is full (%s): free space on its file system; "+
		"the stored records are intact and writes work again then: %w", g.dir, why, ErrStoreFull)
}

func (g *spaceGuard) unavailable(err error) error {
	if isNoSpace(err) {
		return g.full(err.Error())
	}
	return fmt.Errorf("pigeon/persistence: store %q: %v: %w", g.dir, err, ErrStoreUnavailable)
}

// newestFile returns the highest number of the files "<n><ext>" in dir,
// -1 if there is none.
func newestFile(dir, ext string) (int64, error) {
	d, err := os.Open(dir)
	if err != nil {
		return -1, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1, err
	}
	best := int64(-1)
	for _, name := range names {
		num, ok := strings.CutSuffix(name, ext)
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n > best {
			best = n
		}
	}
	return best, nil
}

// walEstimate is how many log bytes badger writes for es (at most).
func walEstimate(es []entry, threshold int64) int64 {
	var n int64
	for _, e := range es {
		v := int64(len(e.value))
		if v >= threshold {
			v = 12 // a value pointer
		}
		n += int64(len(e.key)) + v + walEntryOverhead
	}
	return n
}
