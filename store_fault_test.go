//go:build linux

package pigeon_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon"
)

// storeFaultEnv switches the test binary into the child process of
// TestStoreFault_SaveNewAuthOnFullDisk: TestStoreFaultChild runs the
// client on the store directory it names, so that a crash of the store
// (SIGBUS from badger's memory-mapped log, before the fix) is recorded as
// the child's exit instead of killing the test run.
const storeFaultEnv = "PIGEON_STORE_FAULT_DIR"

// TestStoreFaultChild is the child of TestStoreFault_SaveNewAuthOnFullDisk;
// run directly it skips. On a disk filled after the client opened its
// store, SaveNewAuth fails with ErrStoreFull (many times), the stored
// account keeps its tokens, and once space is freed SaveNewAuth works.
func TestStoreFaultChild(t *testing.T) {
	dir := os.Getenv(storeFaultEnv)
	if dir == "" {
		t.Skip("child process of TestStoreFault_SaveNewAuthOnFullDisk")
	}
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL("https://api.example.com"), pigeon.WithStoreDir(dir),
		pigeon.WithEncryptionKey(bytes.Repeat([]byte{7}, 32)), pigeon.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	save := func(n int) error {
		return p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u1",
			AccessToken: fmt.Sprintf("access-%d", n), RefreshToken: fmt.Sprintf("refresh-%d", n),
			Data: map[string]string{"pad": string(bytes.Repeat([]byte("x"), 1000))}})
	}
	if err := save(1); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(filepath.Dir(dir), "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{64 << 10, 4 << 10, 1} {
		for buf := make([]byte, chunk); ; {
			if _, err := f.Write(buf); err != nil {
				break // ENOSPC
			}
		}
	}
	_ = f.Close()
	for n := 2; n < 300; n++ {
		if err := save(n); !errors.Is(err, pigeon.ErrStoreFull) {
			t.Fatalf("SaveNewAuth %d on a full disk: %v, want ErrStoreFull", n, err)
		}
	}
	if cur, err := p.CurrentAuth(ctx); err != nil || string(cur.AccessToken) != "access-1" {
		t.Fatalf("after the refused saves: %v, %v; want the tokens of save 1", cur.AccessToken, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := save(2); err != nil {
		t.Fatalf("SaveNewAuth after space returned: %v", err)
	}
	if cur, err := p.CurrentAuth(ctx); err != nil || string(cur.AccessToken) != "access-2" {
		t.Fatalf("after space returned: %v, %v", cur.AccessToken, err)
	}
}

// TestStoreFault_SaveNewAuthOnFullDisk (reliability.md R20): a 2 MiB tmpfs
// filled after NewAuthorized; needs root (skips without).
func TestStoreFault_SaveNewAuthOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("pigeon-test", mnt, "tmpfs", 0, "size=2m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreFaultChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), storeFaultEnv+"="+filepath.Join(mnt, "store"))
	out, err := cmd.CombinedOutput()
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || err != nil ||
		!bytes.Contains(out, []byte("--- PASS: TestStoreFaultChild")) {
		if len(out) > 8000 {
			out = append(out[:4000:4000], out[len(out)-4000:]...)
		}
		t.Fatalf("child: %v (signal %v):\n%s", err, ws.Signal(), out)
	}
}
