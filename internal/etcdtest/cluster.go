// Package etcdtest runs a real etcd cluster (go.etcd.io/etcd/server/v3/embed)
// inside the calling process, for pigeon's fleet tests, benchmarks and
// example: every member on 127.0.0.1 with free ports and its own data
// directory, logging to a zap.NewNop logger.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster of embedded members. Safe for
// concurrent use.
type Cluster struct {
	dir     string
	mu      sync.Mutex
	members []*member
}

type member struct {
	name    string
	client  string      // client URL
	e       *embed.Etcd // in-process member, or
	proc    *process    // child-process member
	stopped bool
}

// memberConfig is what a member needs; a child-process member gets it as
// JSON in MemberEnv.
type memberConfig struct {
	Name, Dir, Peer, Client, Initial string
}

func (mc memberConfig) embed() (*embed.Config, error) {
	peer, err := url.Parse(mc.Peer)
	if err != nil {
		return nil, err
	}
	client, err := url.Parse(mc.Client)
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = mc.Name
	cfg.Dir = mc.Dir
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = mc.Initial
	cfg.InitialClusterToken = "pigeon-etcdtest"
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	return cfg, nil
}

// Start starts an n-member cluster inside this process, with its data
// under dir (one subdirectory per member), and returns when every member
// is ready.
func Start(dir string, n int) (*Cluster, error) {
	return start(dir, n, "")
}

// StartProcesses starts an n-member cluster whose members are child
// processes running exe (the test binary, os.Args[0]), so that Kill is a
// real kill -9. exe's TestMain must call MemberMain first (see MemberMain).
func StartProcesses(dir string, n int, exe string) (*Cluster, error) {
	if exe == "" {
		return nil, errors.New("etcdtest: no executable for the members")
	}
	return start(dir, n, exe)
}

func start(dir string, n int, exe string) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("etcdtest: need at least one member")
	}
	// A port found free can be taken before the member binds it (by another
	// test's outgoing connection, say); the cluster then starts again on new
	// ports, in fresh directories.
	var err error
	for attempt := range startAttempts {
		var c *Cluster
		c, err = startOnce(dir, n, exe)
		if err == nil || !errors.Is(err, errAddrInUse) {
			return c, err
		}
		for i := range n {
			if rmErr := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("m%d", i))); rmErr != nil {
				return nil, fmt.Errorf("etcdtest: after attempt %d: %w (and %v)", attempt+1, err, rmErr)
			}
		}
	}
	return nil, fmt.Errorf("etcdtest: %d attempts: %w", startAttempts, err)
}

// startAttempts bounds how often start tries new ports.
const startAttempts = 5

// errAddrInUse marks a member that could not bind a port it was given.
var errAddrInUse = errors.New("etcdtest: address already in use")

// bindError wraps err with errAddrInUse when a listen failed because the
// port was taken.
func bindError(err error) error {
	if errors.Is(err, errAddrInUse) {
		return err
	}
	if errors.Is(err, syscall.EADDRINUSE) || (err != nil && strings.Contains(err.Error(), "address already in use")) {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

func startOnce(dir string, n int, exe string) (*Cluster, error) {
	c := &Cluster{dir: dir}
	mcs := make([]memberConfig, n)
	var initial []string
	taken := map[string]bool{}
	for i := range n {
		p, err := pickURL(taken)
		if err != nil {
			return nil, err
		}
		cl, err := pickURL(taken)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("m%d", i)
		mcs[i] = memberConfig{Name: name, Dir: filepath.Join(dir, name), Peer: p.String(), Client: cl.String()}
		initial = append(initial, name+"="+p.String())
	}
	for i := range mcs {
		mcs[i].Initial = strings.Join(initial, ",")
		m := &member{name: mcs[i].Name, client: mcs[i].Client}
		var err error
		if exe != "" {
			m.proc, err = startProcess(exe, mcs[i])
		} else {
			var cfg *embed.Config
			if cfg, err = mcs[i].embed(); err == nil {
				m.e, err = embed.StartEtcd(cfg)
				err = bindError(err)
			}
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("etcdtest: starting %s: %w", mcs[i].Name, err)
		}
		c.members = append(c.members, m)
	}
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for _, m := range c.members {
		var ready <-chan struct{}
		var failed <-chan error
		if m.e != nil {
			ready, failed = m.e.Server.ReadyNotify(), m.e.Err()
		} else {
			ready, failed = m.proc.ready, m.proc.exited
		}
		select {
		case <-ready:
		case err := <-failed:
			c.Close()
			return nil, fmt.Errorf("etcdtest: %s: %w", m.name, bindError(err))
		case <-timeout.C:
			c.Close()
			return nil, errors.New("etcdtest: cluster not ready after a minute")
		}
	}
	return c, nil
}

// freeURL returns an http URL on 127.0.0.1 with a port that was free and
// is not in taken (which it joins). It prefers ports below the kernel's
// ephemeral range, which outgoing connections never take; where that range
// cannot be read, the kernel picks.
func freeURL(taken map[string]bool) (url.URL, error) {
	lo := ephemeralLow()
	for range 64 {
		addr := "127.0.0.1:0"
		if lo > minPort {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(minPort+rand.IntN(lo-minPort)))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return url.URL{}, err
		}
		got := ln.Addr().String()
		if err := ln.Close(); err != nil {
			return url.URL{}, err
		}
		if taken[got] {
			continue
		}
		taken[got] = true
		return url.URL{Scheme: "http", Host: got}, nil
	}
	return url.URL{}, errors.New("etcdtest: no free port after 64 tries")
}

// pickURL is freeURL; a test replaces it to hand out a taken port.
var pickURL = freeURL

// minPort is the lowest port freeURL picks itself.
const minPort = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 0 when it cannot be read.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) < 1 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}

// Endpoints returns the client URLs of every member, stopped or not.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m.client)
	}
	return out
}

// Client returns a new client of every member; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Leader returns the index of the member that leads, or -1.
func (c *Cluster) Leader() int {
	cli, err := c.Client()
	if err != nil {
		return -1
	}
	defer cli.Close()
	for i, ep := range c.Endpoints() {
		c.mu.Lock()
		stopped := c.members[i].stopped
		c.mu.Unlock()
		if stopped {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

// Kill stops member i abruptly: a child-process member gets SIGKILL; an
// in-process one is closed (no kill -9 exists inside one process).
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	if m.stopped {
		c.mu.Unlock()
		return
	}
	m.stopped = true
	c.mu.Unlock()
	if m.proc != nil {
		m.proc.kill()
		return
	}
	m.e.Close()
	<-m.e.Server.StopNotify()
}

// Close stops every member still running (gracefully, all at once) and
// waits until each has stopped. It removes nothing from disk. Idempotent.
func (c *Cluster) Close() {
	c.mu.Lock()
	var run []*member
	for _, m := range c.members {
		if !m.stopped {
			m.stopped = true
			run = append(run, m)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.proc != nil {
				m.proc.stop()
				return
			}
			m.e.Close()
			<-m.e.Server.StopNotify()
		}()
	}
	wg.Wait()
}
