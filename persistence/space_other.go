//go:build !linux

package persistence

import (
	"math"
	"os"
)

// On systems other than Linux the guard does not preallocate or measure
// free space: only Linux's fallocate and statfs are used.

func preallocate(*os.File, int64, int64) error { return nil }

func isNoSpace(error) bool { return false }

func freeBytes(string) (int64, error) { return math.MaxInt64, nil }

func writable(string) error { return nil }

func allocatedBytes(os.FileInfo) int64 { return 0 }
