package persistence

import (
	"errors"
	"math"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// preallocate allocates blocks for n bytes of f from off without changing
// its size.
func preallocate(f *os.File, off, n int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
		if !errors.Is(err, unix.EINTR) {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil // the file system cannot preallocate: the reserve is all the guard has
			}
			return err
		}
	}
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// freeBytes is the space on dir's file system available to this process.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	free := st.Bavail
	if os.Geteuid() == 0 {
		free = st.Bfree // root may use the blocks reserved for it
	}
	if free > math.MaxInt64/uint64(max(st.Bsize, 1)) {
		return math.MaxInt64, nil
	}
	return int64(free) * int64(st.Bsize), nil
}

// writable reports why dir cannot be written: a read-only mount (bind
// mounts included) or no write permission.
func writable(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return unix.EROFS
	}
	return unix.Access(dir, unix.W_OK)
}

// allocatedBytes is how much of the file fi describes has blocks.
func allocatedBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return 0
}
