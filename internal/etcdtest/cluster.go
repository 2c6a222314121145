// Package etcdtest runs a real etcd cluster (go.etcd.io/etcd/server/v3/embed)
// inside the calling process, for pigeon's fleet tests, benchmarks and
// example: every member on 127.0.0.1 with free ports and its own data
// directory, logging to a zap.NewNop logger.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	client  string // client URL
	e       *embed.Etcd
	stopped bool
}

// Start starts an n-member cluster with its data under dir (one
// subdirectory per member) and returns when every member is ready.
func Start(dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("etcdtest: need at least one member")
	}
	c := &Cluster{dir: dir}
	peers := make([]url.URL, n)
	clients := make([]url.URL, n)
	var initial []string
	for i := range n {
		p, err := freeURL()
		if err != nil {
			return nil, err
		}
		cl, err := freeURL()
		if err != nil {
			return nil, err
		}
		peers[i], clients[i] = p, cl
		initial = append(initial, fmt.Sprintf("m%d=%s", i, p.String()))
	}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenPeerUrls = []url.URL{peers[i]}
		cfg.AdvertisePeerUrls = []url.URL{peers[i]}
		cfg.ListenClientUrls = []url.URL{clients[i]}
		cfg.AdvertiseClientUrls = []url.URL{clients[i]}
		cfg.ListenMetricsUrls = nil
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "pigeon-etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.Logger = "zap"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.LogLevel = "error"
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("etcdtest: starting %s: %w", cfg.Name, err)
		}
		c.members = append(c.members, &member{name: cfg.Name, client: clients[i].String(), e: e})
	}
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for _, m := range c.members {
		select {
		case <-m.e.Server.ReadyNotify():
		case err := <-m.e.Err():
			c.Close()
			return nil, fmt.Errorf("etcdtest: %s: %w", m.name, err)
		case <-timeout.C:
			c.Close()
			return nil, errors.New("etcdtest: cluster not ready after a minute")
		}
	}
	return c, nil
}

// freeURL returns an http URL on 127.0.0.1 with a port that was free.
func freeURL() (url.URL, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return url.URL{}, err
	}
	return url.URL{Scheme: "http", Host: addr}, nil
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
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if !m.stopped && m.e.Server.Leader() == m.e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// Kill stops member i abruptly: no leadership transfer, its connections
// cut (the nearest an in-process member gets to kill -9).
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	if m.stopped {
		c.mu.Unlock()
		return
	}
	m.stopped = true
	c.mu.Unlock()
	m.e.Server.HardStop()
	m.e.Close()
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
	ms := c.members
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.e.Close()
		}()
	}
	wg.Wait()
	for _, m := range ms {
		<-m.e.Server.StopNotify()
	}
}

// TempDir makes a directory for a cluster's data; the caller removes it.
func TempDir() (string, error) { return os.MkdirTemp("", "pigeon-etcd-*") }
