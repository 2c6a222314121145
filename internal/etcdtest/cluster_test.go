package etcdtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if code := MemberMain(); code >= 0 {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// takenFirst makes pickURL hand out a port held by ln on its first call,
// then free ports; it returns how many calls were made.
func takenFirst(t *testing.T) *atomic.Int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var calls atomic.Int32
	orig := pickURL
	pickURL = func(taken map[string]bool) (url.URL, error) {
		if calls.Add(1) == 1 {
			return url.URL{Scheme: "http", Host: ln.Addr().String()}, nil
		}
		return orig(taken)
	}
	t.Cleanup(func() { pickURL = orig })
	return &calls
}

func serves(t *testing.T, c *Cluster) {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// A member whose port was taken between the pick and the bind: the
// cluster starts again on new ports (the CI failure "bind: address already
// in use" of TestFleet_OneRefreshPerExpiry), in-process and as child
// processes.
func TestStart_PortTakenStartsAgain(t *testing.T) {
	for name, start := range map[string]func(dir string) (*Cluster, error){
		"in-process": func(dir string) (*Cluster, error) { return Start(dir, 1) },
		"processes":  func(dir string) (*Cluster, error) { return StartProcesses(dir, 1, os.Args[0]) },
	} {
		t.Run(name, func(t *testing.T) {
			calls := takenFirst(t)
			c, err := start(t.TempDir())
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			defer c.Close()
			if n := calls.Load(); n < 4 {
				t.Fatalf("%d picks; want the 2 of a failed attempt and 2 more", n)
			}
			serves(t, c)
		})
	}
}

func TestBindError(t *testing.T) {
	_, err := net.Listen("tcp", "256.0.0.1:0")
	if errors.Is(bindError(err), errAddrInUse) {
		t.Fatalf("%v classed as a taken port", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = net.Listen("tcp", ln.Addr().String())
	if !errors.Is(bindError(err), errAddrInUse) {
		t.Fatalf("%v not classed as a taken port", err)
	}
	if e := bindError(bindError(err)); e.Error() != bindError(err).Error() {
		t.Fatalf("wrapped twice: %v", e)
	}
}

func TestFreeURL_BelowEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo <= minPort {
		t.Skipf("ephemeral range starts at %d", lo)
	}
	taken := map[string]bool{}
	for range 20 {
		u, err := freeURL(taken)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(u.Host)
		p := 0
		for _, r := range port {
			p = p*10 + int(r-'0')
		}
		if p < minPort || p >= lo {
			t.Fatalf("port %d outside [%d, %d)", p, minPort, lo)
		}
	}
	if len(taken) != 20 {
		t.Fatalf("%d distinct ports of 20", len(taken))
	}
}
