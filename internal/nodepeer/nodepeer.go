// Package nodepeer starts a node.js peer for an interop test: a server.js
// in a testdata directory with its npm packages, on loopback.
package nodepeer

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Start runs `node server.js` in dir and returns the port it prints as its
// first stdout line ("PORT <n>"). The process is killed and waited for in
// t.Cleanup. Without node, or without dir/node_modules/<module>, the test
// is skipped, unless CI=true: then a missing node fails the test and
// missing node_modules are installed with `npm ci`.
func Start(t testing.TB, dir, module string) string {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	node, err := exec.LookPath("node")
	if err != nil {
		if ci {
			t.Fatalf("node not found (required in CI): %v", err)
		}
		t.Skipf("skipping interop with %s: node not installed (%v)", module, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		if !ci {
			t.Skipf("skipping interop with %s: run `npm ci` in %s first (CI=true does it automatically)", module, dir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	lines := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-readerDone
		_ = cmd.Wait()
	})
	select {
	case l := <-lines:
		port, ok := strings.CutPrefix(l, "PORT ")
		if !ok {
			t.Fatalf("%s/server.js printed %q", dir, l)
		}
		return port
	case <-time.After(30 * time.Second):
		t.Fatalf("%s/server.js did not print its port", dir)
		return ""
	}
}
