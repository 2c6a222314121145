package pigeon

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/fleet"
	"github.com/apppigeon/pigeon/persistence"
)

// etcdConfig is what WithEtcd set.
type etcdConfig struct {
	cli    *clientv3.Client
	prefix string
}

// WithEtcd runs the client in fleet mode: its accounts live in the etcd
// cluster of cli under prefix instead of the badger store, sealed with the
// store key (WithEncryptionKey, else PIGEON_STORE_KEY; AES-GCM, so etcd
// holds no plaintext token), and every process with the same prefix and
// key shares them. Refreshes are fleet-wide — one refresh per expiry across
// all processes, fenced by a lease-backed lock per account (see package
// fleet) — and each process follows the others' refreshes and sign-outs
// through a watch. The client does not close cli; close it after the
// client. Zero value (option not given): the badger store.
func WithEtcd(cli *clientv3.Client, prefix string) Option {
	return optionFunc(func(c *config) error {
		if cli == nil {
			return errors.New("pigeon: WithEtcd: nil etcd client")
		}
		if strings.Trim(prefix, "/") == "" {
			return fmt.Errorf("pigeon: WithEtcd: %w", fleet.ErrInvalidPrefix)
		}
		c.etcd = &etcdConfig{cli: cli, prefix: prefix}
		return nil
	})
}

// openFleet opens the fleet store of WithEtcd.
func openFleet(cfg *config) (persistence.Store, error) {
	key := cfg.encryptionKey
	if key == nil {
		env := os.Getenv("PIGEON_STORE_KEY")
		if env == "" {
			return nil, fmt.Errorf("pigeon: WithEtcd needs the store key (WithEncryptionKey or PIGEON_STORE_KEY): %w", persistence.ErrInvalidKey)
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(env))
		if err != nil {
			return nil, fmt.Errorf("pigeon: PIGEON_STORE_KEY: %w", persistence.ErrInvalidKey)
		}
		key = k
	}
	s, err := fleet.New(cfg.etcd.cli, cfg.etcd.prefix, key, fleet.WithLogger(cfg.logger), fleet.WithClock(cfg.now))
	if err != nil {
		return nil, fmt.Errorf("pigeon: %w", err)
	}
	return s, nil
}

// fleetRefresh makes f fleet-wide when store is a fleet store.
func fleetRefresh(store persistence.Store, f actors.RefreshFunc) actors.RefreshFunc {
	if fs, ok := store.(*fleet.Store); ok {
		return fs.Refresh(f)
	}
	return f
}

// startFleet starts following the other processes once the AuthStore
// has loaded (fleet mode only).
func (p *AuthorizedPigeon) startFleet() error {
	fs, ok := p.store.(*fleet.Store)
	if !ok {
		return nil
	}
	if err := fs.Follow(p.system, p.storePID); err != nil {
		return fmt.Errorf("pigeon: %w", err)
	}
	return nil
}
