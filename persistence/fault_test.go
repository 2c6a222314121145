//go:build linux

package persistence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/apppigeon/pigeon/messages"
)

// Storage faults are run in a child process (the test binary run again
// with -test.run=^TestFaultChild$ and faultEnv naming the scenario), so
// that a fault that kills the process — SIGBUS from a memory-mapped file,
// an exit from badger's assertions, a panic in one of its goroutines — is
// recorded as the child's exit status and stderr instead of killing the
// test run. The child runs one scenario of faultScenarios and passes only
// if the store answered every fault with the promised error.
const (
	faultEnv    = "PIGEON_PERSISTENCE_FAULT"
	faultDirEnv = "PIGEON_PERSISTENCE_FAULT_DIR"
)

// faultScenarios are the child's scenarios, by name. dir is the store's
// data directory; its parent is a mount of its own where the scenario
// needs one.
var faultScenarios = map[string]func(t *testing.T, dir string){
	"full":     childDiskFull,
	"readonly": childReadOnly,
	"open":     childOpenDamaged,
}

// TestFaultChild is the child process of the fault tests; run directly it
// skips.
func TestFaultChild(t *testing.T) {
	name := os.Getenv(faultEnv)
	if name == "" {
		t.Skip("child process of the storage fault tests")
	}
	run, ok := faultScenarios[name]
	if !ok {
		t.Fatalf("unknown fault scenario %q", name)
	}
	run(t, os.Getenv(faultDirEnv))
}

// runFaultChild runs scenario on dir in a child process and fails t if
// the child did not pass: killed by a signal, exited, or failed.
func runFaultChild(t *testing.T, scenario, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), faultEnv+"="+scenario, faultDirEnv+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		t.Fatalf("scenario %q: the store's process was killed by %v:\n%s", scenario, ws.Signal(), tail(out.String()))
	case err != nil || !strings.Contains(out.String(), "--- PASS: TestFaultChild"):
		t.Fatalf("scenario %q: child failed (%v):\n%s", scenario, err, tail(out.String()))
	}
}

// tail is the start and the end of a child's output, enough to show a
// crash (the fatal error and the failing goroutine come first).
func tail(s string) string {
	if len(s) > 8000 {
		return s[:4000] + "\n…\n" + s[len(s)-4000:]
	}
	return s
}

// needRoot skips t without root (mounts need it); as root (here and in
// CI) it runs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a file system")
	}
}

// mountTmpfs mounts a tmpfs of size bytes, unmounted at the end of t.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	mnt := t.TempDir()
	if err := syscall.Mount("pigeon-test", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

// mountExt4 makes an ext4 image of size bytes (no blocks reserved for
// root) and mounts it with -o loop, unmounted at the end of t.
func mountExt4(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

func unmount(t *testing.T, mnt string) {
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Errorf("unmount %s: %v", mnt, err)
	}
}

// faultRecord is version n of uid with a kilobyte of Data.
func faultRecord(uid string, n int) messages.AuthRecord {
	r := rec(uid, n)
	r.Data = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("x", 1000)))
	return r
}

// wantOnly checks that s holds exactly want, current want[0].
func wantOnly(t *testing.T, s Store, want ...messages.AuthRecord) {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if d := diffState(st, State{Records: want, Current: want[0].UID}); d != "" {
		t.Fatalf("stored state: %s", d)
	}
}

// fill writes a file in dir until its file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling: %v", err)
				}
				break
			}
		}
	}
	_ = f.Sync()
	return path
}

// childDiskFull: the disk fills up after the store was opened and
// written. Every later write (many of them, far past what badger's files
// had allocated) fails with ErrStoreFull, nothing is written, the stored
// record is intact; once space is freed, writes work again and survive a
// reopen.
func childDiskFull(t *testing.T, dir string) {
	ctx := context.Background()
	s, err := OpenBadger(dir, WithEncryptionKey(testKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord("alice", 1)}, SetCurrent: strp("alice")}); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, filepath.Dir(dir))
	for i := range 500 {
		err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord("alice", 2+i), faultRecord(fmt.Sprintf("u%03d", i), 1)}})
		if !errors.Is(err, ErrStoreFull) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("write %d on a full disk: %v, want ErrStoreFull naming %s", i, err, dir)
		}
	}
	big := faultRecord("bob", 1) // past badger's value threshold: written to the value log
	big.Data = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("y", 70_000)))
	if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{big}}); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a value-log write on a full disk: %v, want ErrStoreFull", err)
	}
	wantOnly(t, s, faultRecord("alice", 1))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord("alice", 2), big}}); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	wantOnly(t, s, faultRecord("alice", 2), big)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBadger(dir, WithEncryptionKey(testKey))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantOnly(t, s, faultRecord("alice", 2), big)
}

// TestFault_DiskFullTmpfs (reliability.md R20): a 2 MiB tmpfs filled
// after the store was opened.
func TestFault_DiskFullTmpfs(t *testing.T) {
	needRoot(t)
	runFaultChild(t, "full", filepath.Join(mountTmpfs(t, 2<<20), "store"))
}

// TestFault_DiskFullExt4 (reliability.md R20): a loop-mounted 16 MiB ext4
// image filled after the store was opened.
func TestFault_DiskFullExt4(t *testing.T) {
	needRoot(t)
	runFaultChild(t, "full", filepath.Join(mountExt4(t, 16<<20), "store"))
}

// childReadOnly: the store directory becomes read-only while the store is
// open (a read-only bind mount over it: badger's open files stay writable,
// new files cannot be created, as when a volume is remounted read-only).
// Writes of more than a memtable (badger would rotate it and create a
// file) fail with ErrStoreUnavailable, reads work, and once the directory
// is writable again writes work.
func childReadOnly(t *testing.T, dir string) {
	ctx := context.Background()
	s, err := OpenBadger(dir, WithEncryptionKey(testKey))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord("alice", 1)}, SetCurrent: strp("alice")}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		_ = syscall.Unmount(dir, 0)
		t.Fatalf("remount read-only: %v", err)
	}
	for i := range 6000 { // 6000 × ~1.2 KiB: past the 4 MiB memtable
		err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord(fmt.Sprintf("u%04d", i), 1)}})
		if !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), dir) {
			_ = syscall.Unmount(dir, 0)
			t.Fatalf("write %d to a read-only directory: %v, want ErrStoreUnavailable naming %s", i, err, dir)
		}
	}
	wantOnly(t, s, faultRecord("alice", 1))
	if err := syscall.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{faultRecord("alice", 2)}}); err != nil {
		t.Fatalf("write after the directory is writable again: %v", err)
	}
	wantOnly(t, s, faultRecord("alice", 2))
}

// TestFault_ReadOnlyDir (reliability.md R21).
func TestFault_ReadOnlyDir(t *testing.T) {
	needRoot(t)
	runFaultChild(t, "readonly", filepath.Join(mountTmpfs(t, 64<<20), "store"))
}

// childOpenDamaged: opening the damaged store in dir fails with ErrCorrupt
// naming the directory and the way out.
func childOpenDamaged(t *testing.T, dir string) {
	s, err := OpenBadger(dir, WithEncryptionKey(testKey))
	if err == nil {
		st, lerr := s.Load(context.Background())
		_ = s.Close()
		t.Fatalf("damaged store opened (%d records, load error %v), want ErrCorrupt", len(st.Records), lerr)
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("open: %v, want ErrCorrupt naming %s and what to do", err, dir)
	}
	t.Logf("open: %v", err)
}

// damagedStoreAccounts is how many accounts the damaged stores held.
const damagedStoreAccounts = 3000

// writeTables makes a store in dir whose accounts are in tables (three
// sessions, each closed, so badger flushed its memtable into a table
// every time and the MANIFEST lists several changes).
func writeTables(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	for part := range 3 {
		s, err := OpenBadger(dir, WithEncryptionKey(testKey))
		if err != nil {
			t.Fatal(err)
		}
		var recs []messages.AuthRecord
		for i := part; i < damagedStoreAccounts; i += 3 {
			recs = append(recs, faultRecord(fmt.Sprintf("u%04d", i), 1))
		}
		for len(recs) > 0 {
			n := min(200, len(recs))
			if err := s.Apply(ctx, Change{Put: recs[:n]}); err != nil {
				t.Fatal(err)
			}
			recs = recs[n:]
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// files returns dir's files and their contents.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		if n == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// firstTable names one table file of dir.
func firstTable(t *testing.T, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no table in %s (%v)", dir, err)
	}
	return m[0]
}

// TestFault_DamagedFilesAtOpen (reliability.md R22, R23): each kind of
// damage to a store's files is refused at open with ErrCorrupt (in a
// child process, so a badger panic would be recorded), and changes
// nothing on disk except where badger itself already did (the marker
// case); a store restored from the copy taken before the damage opens
// with every account.
func TestFault_DamagedFilesAtOpen(t *testing.T) {
	damage := []struct {
		name      string
		damage    func(t *testing.T, dir string)
		untouched bool // the refused open left every file as it was
	}{
		{"table cut in half", func(t *testing.T, dir string) { halve(t, firstTable(t, dir)) }, true},
		{"table garbled", func(t *testing.T, dir string) {
			p := firstTable(t, dir)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(b) / 3; i < len(b)/3+4096 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"table deleted", func(t *testing.T, dir string) {
			if err := os.Remove(firstTable(t, dir)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"KEYREGISTRY deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "KEYREGISTRY")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"MANIFEST deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "MANIFEST")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"MANIFEST cut in half", func(t *testing.T, dir string) { halve(t, filepath.Join(dir, "MANIFEST")) }, true},
		{"MANIFEST cut to its header", func(t *testing.T, dir string) {
			// A cut at a change boundary: a valid MANIFEST listing no
			// table. badger opens it empty (and removes the tables it no
			// longer lists); the marker makes the open fail.
			if err := os.Truncate(filepath.Join(dir, "MANIFEST"), 8); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	pristine := filepath.Join(t.TempDir(), "pristine")
	writeTables(t, pristine)
	before := files(t, pristine)
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
				t.Fatal(err)
			}
			d.damage(t, dir)
			damaged := files(t, dir)
			runFaultChild(t, "open", dir)
			if after := files(t, dir); d.untouched && !sameFiles(after, damaged) {
				t.Errorf("the refused open changed the store's files")
			}
			// Restore from the copy: every account is there.
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
				t.Fatal(err)
			}
			s := openBadger(t, dir, WithEncryptionKey(testKey))
			st, err := s.Load(context.Background())
			if err != nil || len(st.Records) != damagedStoreAccounts {
				t.Fatalf("restored store: %d records (%v), want %d", len(st.Records), err, damagedStoreAccounts)
			}
		})
	}
	if after := files(t, pristine); len(after) != len(before) {
		t.Fatalf("the pristine copy changed")
	}
}

// halve cuts the file at path to half its size.
func halve(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for n, v := range a {
		if w, ok := b[n]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
