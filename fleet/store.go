package fleet

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	ttl    int
	logger *zap.Logger
	now    func() time.Time
}

// DefaultLockTTL is the TTL of the lease behind the account locks, in
// seconds. Shorter TTLs lost sessions when the etcd leader died (an
// election takes about a second, keep-alives stall meanwhile).
const DefaultLockTTL = 5

// WithLockTTL sets the TTL, in seconds, of the lease that backs this
// process's account locks: how long a crashed or frozen lock holder keeps
// the others waiting. Values below DefaultLockTTL are raised to it. Zero
// value: DefaultLockTTL.
func WithLockTTL(seconds int) Option {
	return optionFunc(func(c *config) { c.ttl = max(seconds, DefaultLockTTL) })
}

// WithLogger sets the logger. Zero value: zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithClock sets the clock used for IssuedAt of refreshed records. Zero
// value: time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// Errors of this package.
var (
	// ErrInvalidPrefix: the key prefix is empty.
	ErrInvalidPrefix = errors.New("pigeon/fleet: invalid key prefix")
	// ErrLockLost: this process lost its account lock (its lease expired:
	// partitioned, frozen, or etcd lost the lease) before its write, which
	// etcd refused. Wraps messages.ErrRefreshUnavailable.
	ErrLockLost = fmt.Errorf("pigeon/fleet: account lock lost before the write, write refused: %w", messages.ErrRefreshUnavailable)
)

// Store is a persistence.PagedLoader over etcd: the accounts of every
// process that uses the same client, prefix and key. Each account is one
// key, prefix/acct/<uid>/rec, whose value is the record sealed with
// AES-GCM (the store key; the key name is the additional data, so a value
// cannot be moved to another account); etcd never holds a plaintext
// token. Its ModRevision is the record's version across the fleet.
//
// Refreshes go through Refresh, which makes them fleet-wide: one refresh
// per expiry across all processes. Changes made by other processes reach
// the local AuthStore through Follow.
//
// Safe for concurrent use. Close does not close the etcd client.
type Store struct {
	cli    *clientv3.Client
	prefix string // no trailing slash
	aead   cipher.AEAD
	cfg    config

	mu      sync.Mutex
	closed  bool
	accts   map[string]*seen // by UID
	loadRev int64            // revision of the last Load
	current string           // the current pointer as last read or written

	sessMu sync.Mutex // guards sess; held while a session is made
	sess   *concurrency.Session

	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// seen is what this process knows of one account's versions in etcd.
type seen struct {
	rev     int64     // revision of the newest change known (put or delete)
	deleted bool      // that change deleted the record
	held    int64     // the version the local AuthStore holds (0: unknown)
	vers    []version // recent versions, oldest first
}

type version struct {
	rev int64
	at  messages.Secret
}

// maxVersions bounds the versions remembered per account: enough to
// recognise the AuthStore writing back any version it may still be
// applying.
const maxVersions = 16

var _ persistence.PagedLoader = (*Store)(nil)

// New returns a Store of the accounts under prefix in the etcd cluster of
// cli, sealed with key (16, 24 or 32 bytes: AES-128, -192 or -256).
func New(cli *clientv3.Client, prefix string, key []byte, opts ...Option) (*Store, error) {
	if cli == nil {
		return nil, errors.New("pigeon/fleet: nil etcd client")
	}
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidPrefix)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pigeon/fleet: store key: %w (need 16, 24 or 32 bytes)", persistence.ErrInvalidKey)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pigeon/fleet: %w", err)
	}
	cfg := config{ttl: DefaultLockTTL, logger: zap.NewNop(), now: time.Now}
	for _, o := range opts {
		o.apply(&cfg)
	}
	s := &Store{cli: cli, prefix: prefix, aead: aead, cfg: cfg, accts: map[string]*seen{}}
	s.life, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// RecordKey is the etcd key of uid's sealed record.
func (s *Store) RecordKey(uid string) string {
	return s.prefix + "/acct/" + url.PathEscape(uid) + "/rec"
}

func (s *Store) lockPrefix(uid string) string {
	return s.prefix + "/acct/" + url.PathEscape(uid) + "/lock"
}

func (s *Store) currentKey() string { return s.prefix + "/current" }

func (s *Store) acctPrefix() string { return s.prefix + "/acct/" }

// uidOf returns the UID of a record key, or false for another key.
func (s *Store) uidOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.acctPrefix())
	if !ok {
		return "", false
	}
	esc, ok := strings.CutSuffix(rest, "/rec")
	if !ok || strings.Contains(esc, "/") {
		return "", false
	}
	uid, err := url.PathUnescape(esc)
	return uid, err == nil
}

// sealedRecord is the plaintext of a sealed value.
type sealedRecord struct {
	UID          string          `json:"uid"`
	AccessToken  string          `json:"at"`
	RefreshToken string          `json:"rt,omitempty"`
	ExpiresAt    time.Time       `json:"exp,omitzero"`
	IssuedAt     time.Time       `json:"iat,omitzero"`
	Data         json.RawMessage `json:"data,omitempty"`
}

func (s *Store) seal(key string, r messages.AuthRecord) ([]byte, error) {
	plain, err := json.Marshal(sealedRecord{
		UID: r.UID, AccessToken: string(r.AccessToken), RefreshToken: string(r.RefreshToken),
		ExpiresAt: r.ExpiresAt.Round(0), IssuedAt: r.IssuedAt.Round(0), Data: r.Data,
	})
	if err != nil {
		return nil, fmt.Errorf("pigeon/fleet: encoding %q: %w", r.UID, err)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pigeon/fleet: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(key)), nil
}

func (s *Store) open(key string, v []byte) (messages.AuthRecord, error) {
	n := s.aead.NonceSize()
	if len(v) < n {
		return messages.AuthRecord{}, &persistence.DecodeError{Key: key, Err: errors.New("sealed value too short")}
	}
	plain, err := s.aead.Open(nil, v[:n], v[n:], []byte(key))
	if err != nil {
		return messages.AuthRecord{}, &persistence.DecodeError{Key: key, Err: fmt.Errorf("%w (or the value was tampered with)", persistence.ErrWrongKey)}
	}
	var r sealedRecord
	if err := json.Unmarshal(plain, &r); err != nil {
		return messages.AuthRecord{}, &persistence.DecodeError{Key: key, Err: err}
	}
	return messages.AuthRecord{
		UID: r.UID, AccessToken: messages.Secret(r.AccessToken), RefreshToken: messages.Secret(r.RefreshToken),
		ExpiresAt: r.ExpiresAt, IssuedAt: r.IssuedAt, Data: r.Data,
	}, nil
}

// observe records that uid's version rev holds at (at "": rev deleted it).
// held marks it as the version the local AuthStore holds. s.mu is held.
func (s *Store) observe(uid string, rev int64, at messages.Secret, held bool) {
	a := s.accts[uid]
	if a == nil {
		a = &seen{}
		s.accts[uid] = a
	}
	if rev >= a.rev || at == "" {
		a.rev = rev
		a.deleted = at == ""
	}
	if at == "" {
		a.vers = nil
		a.held = 0
		return
	}
	a.vers = append(a.vers, version{rev: rev, at: at})
	if len(a.vers) > maxVersions {
		a.vers = a.vers[1:]
	}
	if held {
		a.held = rev
	}
}

// known returns the revision of uid's version that holds at, or 0.
// s.mu is held.
func (s *Store) known(uid string, at messages.Secret) int64 {
	a := s.accts[uid]
	if a == nil {
		return 0
	}
	for i := len(a.vers) - 1; i >= 0; i-- {
		if a.vers[i].at == at {
			return a.vers[i].rev
		}
	}
	return 0
}

// Load returns every account under the prefix, from one revision.
func (s *Store) Load(ctx context.Context) (persistence.State, error) {
	var st persistence.State
	cur, err := s.LoadPages(ctx, 0, func(recs []messages.AuthRecord) error {
		st.Records = append(st.Records, recs...)
		return nil
	})
	st.Current = cur
	return st, err
}

// LoadPages reads every account under the prefix from one revision (one
// range read) and hands them over in pages sorted by UID. Follow watches
// from that revision on.
func (s *Store) LoadPages(ctx context.Context, pageSize int, page func([]messages.AuthRecord) error) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	resp, err := s.cli.Get(ctx, s.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return "", fmt.Errorf("pigeon/fleet: loading %q: %w", s.prefix, err)
	}
	var recs []messages.AuthRecord
	revs := map[string]int64{}
	current := ""
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if k == s.currentKey() {
			current = string(kv.Value)
			continue
		}
		uid, ok := s.uidOf(k)
		if !ok {
			continue
		}
		r, err := s.open(k, kv.Value)
		if err != nil {
			return "", err
		}
		if r.UID != uid {
			return "", &persistence.DecodeError{Key: k, Err: fmt.Errorf("record of %q under the key of %q", r.UID, uid)}
		}
		recs = append(recs, r)
		revs[uid] = kv.ModRevision
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].UID < recs[j].UID })
	s.mu.Lock()
	s.loadRev = resp.Header.Revision
	s.current = current
	for _, r := range recs {
		s.observe(r.UID, revs[r.UID], r.AccessToken, true)
	}
	s.mu.Unlock()
	if _, ok := revs[current]; !ok {
		current = ""
	}
	if pageSize <= 0 {
		pageSize = persistence.DefaultPageSize
	}
	for len(recs) > 0 {
		n := min(pageSize, len(recs))
		if err := page(recs[:n:n]); err != nil {
			return "", err
		}
		recs = recs[n:]
	}
	return current, nil
}

// Apply writes ch in one etcd transaction. A put of a version this store
// read from etcd (the AuthStore saving what Refresh or Follow gave it) is
// not written again; any other put (a login) replaces the record. Deleting
// an account this process already saw deleted writes nothing.
func (s *Store) Apply(ctx context.Context, ch persistence.Change) error {
	if err := s.check(); err != nil {
		return err
	}
	for _, r := range ch.Put {
		if r.UID == "" {
			return fmt.Errorf("%w: a record in Put has an empty UID", persistence.ErrInvalidChange)
		}
		if r.AccessToken == "" {
			return fmt.Errorf("%w: record %q has no access token", persistence.ErrInvalidChange, r.UID)
		}
		for _, d := range ch.Delete {
			if d == r.UID {
				return fmt.Errorf("%w: UID %q is both put and deleted", persistence.ErrInvalidChange, d)
			}
		}
	}
	for _, d := range ch.Delete {
		if d == "" {
			return fmt.Errorf("%w: Delete holds an empty UID", persistence.ErrInvalidChange)
		}
	}
	var ops []clientv3.Op
	var puts []messages.AuthRecord
	var dels []string
	s.mu.Lock()
	for _, r := range ch.Put {
		if rev := s.known(r.UID, r.AccessToken); rev != 0 {
			s.accts[r.UID].held = max(s.accts[r.UID].held, rev)
			continue
		}
		k := s.RecordKey(r.UID)
		v, err := s.seal(k, r)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		ops = append(ops, clientv3.OpPut(k, string(v)))
		puts = append(puts, r)
	}
	for _, uid := range ch.Delete {
		if a := s.accts[uid]; a != nil && a.deleted {
			continue // deleted already (by the refresh that was rejected, or another process)
		}
		ops = append(ops, clientv3.OpDelete(s.RecordKey(uid)))
		dels = append(dels, uid)
	}
	if ch.SetCurrent != nil && *ch.SetCurrent == s.current {
		ch.SetCurrent = nil // what etcd holds (a switch followed from the watch)
	}
	s.mu.Unlock()
	if ch.SetCurrent != nil {
		if *ch.SetCurrent == "" {
			ops = append(ops, clientv3.OpDelete(s.currentKey()))
		} else {
			ops = append(ops, clientv3.OpPut(s.currentKey(), *ch.SetCurrent))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("pigeon/fleet: write: %w", err)
	}
	rev := resp.Header.Revision
	s.mu.Lock()
	for _, r := range puts {
		s.observe(r.UID, rev, r.AccessToken, true)
	}
	for _, uid := range dels {
		s.observe(uid, rev, "", false)
	}
	if ch.SetCurrent != nil {
		s.current = *ch.SetCurrent
	}
	s.mu.Unlock()
	return nil
}

// get reads uid's record: its value and ModRevision (0: none).
func (s *Store) get(ctx context.Context, uid string) (messages.AuthRecord, int64, error) {
	k := s.RecordKey(uid)
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return messages.AuthRecord{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return messages.AuthRecord{}, 0, nil
	}
	r, err := s.open(k, resp.Kvs[0].Value)
	if err != nil {
		return messages.AuthRecord{}, 0, err
	}
	return r, resp.Kvs[0].ModRevision, nil
}

func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return messages.ErrClosed
	}
	return nil
}

// session returns this process's lease-backed session, making a new one
// when the last one ended (its lease expired or was revoked).
func (s *Store) session() (*concurrency.Session, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	if s.sess != nil {
		select {
		case <-s.sess.Done():
			s.cfg.logger.Warn("fleet: lease lost; taking a new one", zap.Int64("lease", int64(s.sess.Lease())))
			s.sess.Orphan()
			s.sess = nil
		default:
			return s.sess, nil
		}
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(s.cfg.ttl), concurrency.WithContext(s.life))
	if err != nil {
		return nil, err
	}
	s.sess = sess
	return sess, nil
}

// dropSession forgets sess if it is still this process's session (its
// lease ended, or a guard said it no longer owns its lock), so that the
// next lock takes a new lease, and revokes it.
func (s *Store) dropSession(sess *concurrency.Session) {
	s.sessMu.Lock()
	mine := s.sess == sess
	if mine {
		s.sess = nil
	}
	s.sessMu.Unlock()
	if mine {
		closeSession(sess)
	}
}

func closeSession(sess *concurrency.Session) {
	// Revoke the lease so that a lock left behind is free at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = sess.Client().Revoke(ctx, sess.Lease())
	sess.Orphan()
}

// Close stops Follow's watch, revokes the session's lease (a lock this
// process holds is free at once) and makes later calls return
// messages.ErrClosed. It does not close the etcd client. Idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.sessMu.Lock()
	sess := s.sess
	s.sess = nil
	s.sessMu.Unlock()
	if sess != nil {
		closeSession(sess)
	}
	return nil
}
