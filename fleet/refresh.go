package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// ErrSignedOutElsewhere: the account's record is gone from etcd (another
// process's refresh was rejected, or the account logged out there). It
// wraps messages.ErrRefreshRejected, so the local session ends too.
var ErrSignedOutElsewhere = fmt.Errorf("pigeon/fleet: the account was signed out by another process: %w", messages.ErrRefreshRejected)

// Refresh returns refresh made fleet-wide, for the RefreshCoordinator:
//
//   - It reads the account's record in etcd. If it is newer than the
//     version the caller holds (another process refreshed), it returns the
//     stored tokens without calling refresh.
//   - Else it takes the account's lock (a concurrency.Mutex on this
//     process's lease), reads again (a newer record: adopt it), and calls
//     refresh with the refresh token stored in etcd — never with the
//     caller's cached one.
//   - It writes the result in one transaction guarded by "this process
//     still owns the lock" and "the record is still at the revision read".
//     A refused write (the lease expired: a frozen or partitioned process)
//     adopts what is stored, or fails with ErrLockLost.
//   - A rejected refresh deletes the record under the same guard, so the
//     whole fleet signs out once (each process through Follow).
//
// The returned function is safe for concurrent use.
func (s *Store) Refresh(refresh actors.RefreshFunc) actors.RefreshFunc {
	return func(ctx context.Context, uid string, rt messages.Secret) (messages.RefreshedTokens, error) {
		return s.refresh(ctx, refresh, uid, rt)
	}
}

func unavailable(what string, err error) error {
	return fmt.Errorf("pigeon/fleet: %s: %w: %w", what, messages.ErrRefreshUnavailable, err)
}

func adopt(r messages.AuthRecord) messages.RefreshedTokens {
	return messages.RefreshedTokens{AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, ExpiresAt: r.ExpiresAt, Data: r.Data}
}

func (s *Store) refresh(ctx context.Context, refresh actors.RefreshFunc, uid string, rt messages.Secret) (messages.RefreshedTokens, error) {
	rec, rev, err := s.stored(ctx, uid)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	s.mu.Lock()
	held := int64(0)
	if a := s.accts[uid]; a != nil {
		held = a.held
	}
	s.mu.Unlock()
	if rec.RefreshToken != rt || rev > held {
		s.adopted(uid, rev, rec)
		return adopt(rec), nil
	}
	for attempt := 1; ; attempt++ {
		out, err := s.lockedRefresh(ctx, refresh, uid, rev)
		if !errors.Is(err, errRetry) {
			return out, err
		}
		if attempt == maxAttempts {
			return messages.RefreshedTokens{}, ErrLockLost
		}
		s.cfg.logger.Warn("fleet: lease lost before the refresh; trying again with a new lease", zap.String("uid", uid))
	}
}

// maxAttempts bounds the lock attempts of one refresh whose lease ended
// before it spent the refresh token.
const maxAttempts = 3

// errRetry: the lease ended before the refresh token was spent and the
// record is unchanged: take a new lease and try again.
var errRetry = errors.New("pigeon/fleet: retry")

// lockHeld is uid's lock, taken on this process's lease.
type lockHeld struct {
	mu   *concurrency.Mutex
	sess *concurrency.Session
}

// lock takes uid's lock on this process's lease; unlock releases it.
func (s *Store) lock(ctx context.Context, uid string) (h lockHeld, unlock func(), err error) {
	sess, err := s.session()
	if err != nil {
		return lockHeld{}, nil, unavailable("lease", err)
	}
	mu := concurrency.NewMutex(sess, s.lockPrefix(uid))
	if err := mu.Lock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrSessionExpired) {
			s.dropSession(sess)
		}
		return lockHeld{}, nil, unavailable("taking the account lock", err)
	}
	return lockHeld{mu, sess}, func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx) // a lost lease already released it
	}, nil
}

// lockedRefresh is one attempt under uid's lock; base is the revision the
// caller's version is at.
func (s *Store) lockedRefresh(ctx context.Context, refresh actors.RefreshFunc, uid string, base int64) (messages.RefreshedTokens, error) {
	h, unlock, err := s.lock(ctx, uid)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	defer unlock()
	rec, rev, err := s.stored(ctx, uid)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	if rev != base {
		s.adopted(uid, rev, rec)
		return adopt(rec), nil
	}
	key := s.RecordKey(uid)
	guard := []clientv3.Cmp{h.mu.IsOwner(), clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	// One cheap guarded read first: a process that lost its lease while it
	// waited must not spend the refresh token. The Get makes the
	// transaction linearizable: etcd serves a transaction without any
	// range op serializably, from a follower that may not have applied our
	// own lock key yet (IsTxnSerializable is true for empty op lists).
	if resp, err := s.cli.Txn(ctx).If(guard...).Then(clientv3.OpGet(key, clientv3.WithCountOnly())).Else(clientv3.OpGet(key, clientv3.WithCountOnly())).Commit(); err != nil {
		return messages.RefreshedTokens{}, unavailable("checking the lock", err)
	} else if !resp.Succeeded {
		s.dropSession(h.sess)
		out, err := s.refused(ctx, uid, rev)
		if errors.Is(err, ErrLockLost) {
			return out, errRetry
		}
		return out, err
	}
	started := s.cfg.now()
	tokens, err := refresh(ctx, uid, rec.RefreshToken)
	if errors.Is(err, messages.ErrRefreshRejected) {
		resp, terr := s.cli.Txn(ctx).If(guard...).Then(clientv3.OpDelete(key)).Commit()
		if terr != nil {
			return messages.RefreshedTokens{}, unavailable("deleting the rejected record", terr)
		}
		if !resp.Succeeded {
			// Another process holds the lock now and may have spent the
			// same token: its outcome (written or deleted) is the fleet's.
			s.cfg.logger.Warn("fleet: refresh rejected after the lock was lost; keeping the stored record", zap.String("uid", uid), zap.Error(err))
			return s.refused(ctx, uid, rev)
		}
		s.mu.Lock()
		s.observe(uid, resp.Header.Revision, "", false)
		s.mu.Unlock()
		return messages.RefreshedTokens{}, err
	}
	if err != nil || tokens.AccessToken == "" {
		return tokens, err
	}
	next := rec.Clone()
	next.AccessToken = tokens.AccessToken
	if tokens.RefreshToken != "" {
		next.RefreshToken = tokens.RefreshToken
	}
	next.ExpiresAt = tokens.ExpiresAt
	if next.ExpiresAt.IsZero() {
		next.ExpiresAt = actors.JWTExpiry(string(tokens.AccessToken))
	}
	next.IssuedAt = started
	if tokens.Data != nil {
		next.Data = append([]byte(nil), tokens.Data...)
	}
	v, err := s.seal(key, next)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	resp, err := s.cli.Txn(ctx).If(guard...).Then(clientv3.OpPut(key, string(v))).Commit()
	if err != nil {
		// The outcome is unknown; the watch (or the next refresh's read)
		// tells. The provider has rotated the token: this is the one loss
		// no engine prevents unless the provider allows a reuse interval.
		return messages.RefreshedTokens{}, unavailable("writing the refreshed record", err)
	}
	if resp.Succeeded {
		s.adopted(uid, resp.Header.Revision, next)
		return adopt(next), nil
	}
	s.cfg.logger.Warn("fleet: lock lost before the write; write refused", zap.String("uid", uid))
	s.dropSession(h.sess)
	unlock()
	return s.rewrite(ctx, uid, rev, next, string(v))
}

// rewrite runs after this process's write of next was refused because its
// lease ended between the refresh and the write. The provider has rotated
// the token, so next must not be dropped while the record is still the
// one it replaces: take the lock on a new lease (waiting for whoever took
// over) and write it if the record is still at base; else what is stored
// wins.
func (s *Store) rewrite(ctx context.Context, uid string, base int64, next messages.AuthRecord, sealed string) (messages.RefreshedTokens, error) {
	h, unlock, err := s.lock(ctx, uid)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	defer unlock()
	key := s.RecordKey(uid)
	resp, err := s.cli.Txn(ctx).If(h.mu.IsOwner(), clientv3.Compare(clientv3.ModRevision(key), "=", base)).Then(clientv3.OpPut(key, sealed)).Commit()
	if err != nil {
		return messages.RefreshedTokens{}, unavailable("writing the refreshed record", err)
	}
	if resp.Succeeded {
		s.adopted(uid, resp.Header.Revision, next)
		return adopt(next), nil
	}
	return s.refused(ctx, uid, base)
}

// refused handles a write the guard refused: another process holds or
// held the lock. What is stored wins when it is newer than base, the
// revision this refresh started from.
func (s *Store) refused(ctx context.Context, uid string, base int64) (messages.RefreshedTokens, error) {
	rec, rev, err := s.stored(ctx, uid)
	if err != nil {
		return messages.RefreshedTokens{}, err
	}
	if rev != base {
		s.adopted(uid, rev, rec)
		return adopt(rec), nil
	}
	return messages.RefreshedTokens{}, ErrLockLost
}

// stored reads uid's record and its revision; a missing record is
// ErrSignedOutElsewhere.
func (s *Store) stored(ctx context.Context, uid string) (messages.AuthRecord, int64, error) {
	rec, rev, err := s.get(ctx, uid)
	switch {
	case err != nil:
		return rec, 0, unavailable("reading the record", err)
	case rev == 0:
		return rec, 0, ErrSignedOutElsewhere
	}
	return rec, rev, nil
}

func (s *Store) adopted(uid string, rev int64, r messages.AuthRecord) {
	s.mu.Lock()
	s.observe(uid, rev, r.AccessToken, false)
	s.mu.Unlock()
}
