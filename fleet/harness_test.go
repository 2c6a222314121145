package fleet_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/internal/etcdtest"
)

// A fleet test runs pigeon "processes" as child processes of the test
// binary (os.Args[0] with childEnv set), so that kill -9 and SIGSTOP are
// real. A child reads commands on stdin and answers on stdout:
//
//	burst N   N concurrent GET /me; answers "burst ok=<n> fail=<n> err=<first error>"
//	unauth    answers "unauth <n>": Unauthenticated values its auth stream gave
//	go        lets a refresh held by childHold go on
//	quit      closes the client and exits 0
//
// and reports "event refreshing" when its RefreshTokenManager is called
// (this process holds the account lock) and "event refreshed" after it.
const (
	childEnv      = "PIGEON_FLEET_CHILD"
	childEndpoint = "PIGEON_FLEET_ENDPOINTS"
	childPrefix   = "PIGEON_FLEET_PREFIX"
	childKey      = "PIGEON_FLEET_KEY"
	childBase     = "PIGEON_FLEET_BASE"
	// childHold: "before" blocks the RefreshTokenManager after "event
	// refreshing" until "go"; "after" calls the server, reports "event
	// refreshed" and blocks until "go".
	childHold = "PIGEON_FLEET_HOLD"
)

// clock is the backend's clock: tests move it past the access tokens'
// expiry instead of waiting.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// fleetEnv is one test's cluster, backend and account.
type fleetEnv struct {
	t       *testing.T
	cluster *etcdtest.Cluster
	cli     *clientv3.Client
	be      *backend.Backend
	srv     *httptest.Server
	clock   *clock
	prefix  string
	key     []byte
	user    backend.Tokens
}

const accessTTL = time.Hour

// newFleetEnv starts an etcd cluster of members inside this process.
func newFleetEnv(t *testing.T, members int, beOpts ...backend.Option) *fleetEnv {
	t.Helper()
	return newFleetEnvOn(t, func(dir string) (*etcdtest.Cluster, error) { return etcdtest.Start(dir, members) }, beOpts...)
}

func newFleetEnvOn(t *testing.T, startCluster func(dir string) (*etcdtest.Cluster, error), beOpts ...backend.Option) *fleetEnv {
	t.Helper()
	dir := t.TempDir()
	c, err := startCluster(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	e := &fleetEnv{t: t, cluster: c, cli: cli, clock: &clock{}, prefix: "/pigeon-test", key: []byte("0123456789abcdef0123456789abcdef")}
	e.be = backend.New(append([]backend.Option{backend.WithClock(e.clock.Now), backend.WithAccessTTL(accessTTL)}, beOpts...)...)
	e.srv = httptest.NewServer(e.be)
	t.Cleanup(func() { e.srv.Close(); e.be.Close() })
	e.user, err = e.be.CreateUser("fleet@example.com", "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	// The login happens once, in this process; the children load it.
	p := e.client(t)
	if err := p.SaveNewAuth(ctxT(t), pigeon.SaveAuthParams{UID: e.user.UID, AccessToken: e.user.AccessToken,
		RefreshToken: e.user.RefreshToken, ExpiresAt: e.user.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return e
}

// client is a fleet-mode client in this process; the caller closes it.
func (e *fleetEnv) client(t *testing.T) *pigeon.AuthorizedPigeon {
	t.Helper()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(e.srv.URL), pigeon.WithEtcd(e.cli, e.prefix), pigeon.WithEncryptionKey(e.key))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// child is one pigeon process.
type child struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan string
	events  chan string
	done    chan struct{}
}

func (e *fleetEnv) start(t *testing.T, name string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1",
		childEndpoint+"="+strings.Join(e.cluster.Endpoints(), ","),
		childPrefix+"="+e.prefix,
		childKey+"="+base64.StdEncoding.EncodeToString(e.key),
		childBase+"="+e.srv.URL)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, name: name, cmd: cmd, in: in, replies: make(chan string, 64), events: make(chan string, 64), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if ev, ok := strings.CutPrefix(line, "event "); ok {
				select {
				case c.events <- ev:
				default: // nobody waits for so many
				}
				continue
			}
			c.replies <- line
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(c.kill)
	c.expect("ready")
	return c
}

func (c *child) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

// expect returns the next reply, which must start with prefix.
func (c *child) expect(prefix string) string {
	c.t.Helper()
	select {
	case line := <-c.replies:
		if !strings.HasPrefix(line, prefix) {
			c.t.Fatalf("%s answered %q, want %q…", c.name, line, prefix)
		}
		return line
	case <-c.done:
		c.t.Fatalf("%s exited while %q was expected", c.name, prefix)
	case <-time.After(90 * time.Second):
		c.t.Fatalf("%s: no %q within 90s", c.name, prefix)
	}
	return ""
}

func (c *child) event(want string) {
	c.t.Helper()
	select {
	case ev := <-c.events:
		if ev != want {
			c.t.Fatalf("%s: event %q, want %q", c.name, ev, want)
		}
	case <-c.done:
		c.t.Fatalf("%s exited while event %q was expected", c.name, want)
	case <-time.After(90 * time.Second):
		c.t.Fatalf("%s: no event %q within 90s", c.name, want)
	}
}

// burstResult is a child's answer to "burst N".
type burstResult struct {
	ok, fail int
	first    string // the first failure's error
}

func parseBurst(t *testing.T, name, line string) burstResult {
	t.Helper()
	var r burstResult
	f := strings.SplitN(line, " ", 4)
	if len(f) < 4 {
		t.Fatalf("%s: bad burst answer %q", name, line)
	}
	r.ok, _ = strconv.Atoi(strings.TrimPrefix(f[1], "ok="))
	r.fail, _ = strconv.Atoi(strings.TrimPrefix(f[2], "fail="))
	r.first = strings.TrimPrefix(f[3], "err=")
	return r
}

// burst sends "burst n" to every child at once; every request must
// succeed.
func burst(t *testing.T, n int, cs ...*child) {
	t.Helper()
	for i, r := range burstRaw(t, n, cs...) {
		if r.fail != 0 {
			t.Errorf("%s: %d of %d requests failed; first: %s", cs[i].name, r.fail, n, r.first)
		}
	}
}

// burstRaw sends "burst n" to every child at once and returns each
// answer.
func burstRaw(t *testing.T, n int, cs ...*child) []burstResult {
	t.Helper()
	for _, c := range cs {
		c.send("burst " + strconv.Itoa(n))
	}
	out := make([]burstResult, len(cs))
	for i, c := range cs {
		out[i] = parseBurst(t, c.name, c.expect("burst "))
	}
	return out
}

// quit closes the child's client and returns how many Unauthenticated
// values its auth stream gave.
func (c *child) quit() int {
	c.t.Helper()
	c.send("quit")
	n, _ := strconv.Atoi(strings.TrimPrefix(c.expect("bye "), "bye unauth="))
	<-c.done
	return n
}

func (c *child) signal(s syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(s); err != nil {
		c.t.Fatalf("%s: %v: %v", c.name, s, err)
	}
}

// kill is kill -9; it waits until the process is gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// childMain is a pigeon process of the fleet tests.
func childMain() int {
	out := &lockedWriter{w: os.Stdout}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "fleet child:", err)
		return 2
	}
	key, err := base64.StdEncoding.DecodeString(os.Getenv(childKey))
	if err != nil {
		return fail(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(os.Getenv(childEndpoint), ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	defer cli.Close()
	goOn := make(chan struct{}, 16)
	rm := &childRefresher{inner: pigeon.JSONRefresher{Path: "/auth/refresh"}, hold: os.Getenv(childHold), out: out, goOn: goOn}
	lcfg := zap.NewDevelopmentConfig()
	lcfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	log, _ := lcfg.Build()
	p, err := pigeon.NewAuthorized(rm, pigeon.WithBaseURL(os.Getenv(childBase)), pigeon.WithLogger(log),
		pigeon.WithEtcd(cli, os.Getenv(childPrefix)), pigeon.WithEncryptionKey(key))
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := p.SubscribeAuth(ctx)
	if err != nil {
		return fail(err)
	}
	var unauth atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := range st {
			if s.State == pigeon.Unauthenticated {
				unauth.Add(1)
			}
		}
	}()
	// The first value is the state at subscription; it is Authenticated in
	// every test, so every Unauthenticated counted is a sign-out.
	out.println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "burst":
			n, _ := strconv.Atoi(f[1])
			go func() { out.println(runBurst(ctx, p, n)) }()
		case "unauth":
			out.println(fmt.Sprintf("unauth %d", unauth.Load()))
		case "go":
			goOn <- struct{}{}
		case "quit":
			err := p.Close()
			cancel()
			wg.Wait() // the stream ended: the count is final
			if err != nil {
				return fail(err)
			}
			out.println(fmt.Sprintf("bye unauth=%d", unauth.Load()))
			return 0
		}
	}
	return 0
}

func runBurst(ctx context.Context, p *pigeon.AuthorizedPigeon, n int) string {
	var ok, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			resp, err := p.Get(rctx, "/me")
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, strings.ReplaceAll(err.Error(), "\n", " "))
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	e, _ := first.Load().(string)
	return fmt.Sprintf("burst ok=%d fail=%d err=%s", ok.Load(), failed.Load(), e)
}

type childRefresher struct {
	inner pigeon.JSONRefresher
	hold  string
	out   *lockedWriter
	goOn  chan struct{}
	calls atomic.Int64
}

func (r *childRefresher) ShouldRefresh(resp *http.Response) bool { return r.inner.ShouldRefresh(resp) }

func (r *childRefresher) RefreshToken(ctx context.Context, rt string, c *pigeon.RefreshClient) (pigeon.RefreshTokenResponse, error) {
	r.out.println("event refreshing")
	first := r.calls.Add(1) == 1
	if first && r.hold == "before" {
		<-r.goOn
	}
	res, err := r.inner.RefreshToken(ctx, rt, c)
	r.out.println("event refreshed")
	if first && r.hold == "after" {
		<-r.goOn
	}
	return res, err
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, s)
}
