package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// Follow watches the prefix from the revision of the last Load and feeds
// every other process's change into the AuthStore at authStore, as a local
// change would arrive: a newer version of a record it holds is an
// UpdateTokens (requests waiting for it replay, sockets get the new
// token), a record it does not hold is a SaveAuth, a deleted record ends
// the session (EndSession, EndExpired), a new current account is a
// SwitchAccount (the current account is the fleet's). The watch runs in a goroutine the
// Store owns until Close; if the watch is cancelled (its start revision
// was compacted, etcd was unreachable too long) Follow reloads the prefix
// and watches on from there. Call it once, after the AuthStore loaded.
func (s *Store) Follow(sys *actor.ActorSystem, authStore *actor.PID) error {
	if err := s.check(); err != nil {
		return err
	}
	s.mu.Lock()
	from := s.loadRev + 1
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow(sys, authStore, from)
	}()
	return nil
}

func (s *Store) follow(sys *actor.ActorSystem, pid *actor.PID, from int64) {
	ctx := s.life
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				s.cfg.logger.Warn("fleet: watch ended", zap.Error(err))
				break
			}
			for _, ev := range resp.Events {
				s.apply(ctx, sys, pid, ev)
				from = ev.Kv.ModRevision + 1
			}
		}
		cancel()
		for range wch {
			// drain: the channel closes once the cancel is seen
		}
		if ctx.Err() != nil {
			return
		}
		rev, err := s.resync(ctx, sys, pid)
		if err != nil {
			s.cfg.logger.Warn("fleet: reload after the watch ended failed; trying again", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		from = rev + 1
	}
}

// apply feeds one watch event into the AuthStore.
func (s *Store) apply(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID, ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	if key == s.currentKey() {
		s.mu.Lock()
		s.current = string(ev.Kv.Value) // "" for a delete
		s.mu.Unlock()
		if ev.Type == clientv3.EventTypePut {
			s.switchTo(ctx, sys, pid, string(ev.Kv.Value))
		}
		return
	}
	uid, ok := s.uidOf(key)
	if !ok {
		return // a lock key
	}
	if ev.Type == clientv3.EventTypeDelete {
		s.mu.Lock()
		s.observe(uid, ev.Kv.ModRevision, "", false)
		s.mu.Unlock()
		s.endLocal(ctx, sys, pid, uid)
		return
	}
	rec, err := s.open(key, ev.Kv.Value)
	if err != nil {
		s.cfg.logger.Error("fleet: cannot open a watched record; ignored", zap.String("key", key), zap.Error(err))
		return
	}
	s.mu.Lock()
	a := s.accts[uid]
	stale := a != nil && a.rev > ev.Kv.ModRevision
	s.observe(uid, ev.Kv.ModRevision, rec.AccessToken, false)
	s.mu.Unlock()
	if stale {
		return
	}
	s.put(ctx, sys, pid, rec)
}

func (s *Store) put(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID, rec messages.AuthRecord) {
	cur, err := actors.AskAs[*messages.CurrentAuth](ctx, sys, pid, &messages.GetAuth{UID: rec.UID})
	switch {
	case errors.Is(err, messages.ErrNoAuth):
		if _, err := actors.AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SaveAuth{Record: rec}); err != nil && ctx.Err() == nil {
			s.cfg.logger.Warn("fleet: saving a watched account failed", zap.String("uid", rec.UID), zap.Error(err))
		}
	case err != nil:
		if ctx.Err() == nil {
			s.cfg.logger.Warn("fleet: reading an account failed", zap.String("uid", rec.UID), zap.Error(err))
		}
	case cur.Record.AccessToken == rec.AccessToken:
		// this process's own write, or already applied
	default:
		_, err := actors.AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.UpdateTokens{
			UID: rec.UID, Generation: cur.Snapshot.Generation,
			AccessToken: rec.AccessToken, RefreshToken: rec.RefreshToken,
			ExpiresAt: rec.ExpiresAt, IssuedAt: rec.IssuedAt, Data: rec.Data,
		})
		if err != nil && ctx.Err() == nil {
			s.cfg.logger.Info("fleet: applying a watched refresh failed", zap.String("uid", rec.UID), zap.Error(err))
		}
	}
}

// switchTo follows another process's SwitchAccount (or login with
// MakeCurrent): the current account is the fleet's.
func (s *Store) switchTo(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID, uid string) {
	_, err := actors.AskAs[*messages.SavedAuth](ctx, sys, pid, &messages.SwitchAccount{UID: uid})
	if err != nil && ctx.Err() == nil {
		s.cfg.logger.Info("fleet: following a switch of the current account failed", zap.String("uid", uid), zap.Error(err))
	}
}

func (s *Store) endLocal(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID, uid string) {
	cur, err := actors.AskAs[*messages.CurrentAuth](ctx, sys, pid, &messages.GetAuth{UID: uid})
	if err != nil {
		return // not held here (or closing)
	}
	if _, err := actors.AskAs[*messages.SessionEnded](ctx, sys, pid, &messages.EndSession{UID: uid, Generation: cur.Snapshot.Generation, Reason: messages.EndExpired}); err != nil && ctx.Err() == nil {
		s.cfg.logger.Warn("fleet: ending a session deleted elsewhere failed", zap.String("uid", uid), zap.Error(err))
	}
}

// resync reloads the prefix after the watch ended and brings the
// AuthStore to it; it returns the revision read.
func (s *Store) resync(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	present := map[string]bool{}
	for _, kv := range resp.Kvs {
		if uid, ok := s.uidOf(string(kv.Key)); ok {
			present[uid] = true
		}
		// the current pointer goes last, once its record is in
		if string(kv.Key) != s.currentKey() {
			s.apply(ctx, sys, pid, &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv})
		}
	}
	for _, kv := range resp.Kvs {
		if string(kv.Key) == s.currentKey() {
			s.apply(ctx, sys, pid, &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv})
		}
	}
	list, err := actors.AskAs[*messages.AuthList](ctx, sys, pid, &messages.ListAuths{})
	if err != nil {
		return 0, err
	}
	for _, r := range list.Records {
		if !present[r.UID] {
			s.mu.Lock()
			s.observe(r.UID, resp.Header.Revision, "", false)
			s.mu.Unlock()
			s.endLocal(ctx, sys, pid, r.UID)
		}
	}
	return resp.Header.Revision, nil
}
