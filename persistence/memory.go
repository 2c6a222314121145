package persistence

import (
	"context"
	"sort"
	"sync"

	"github.com/apppigeon/pigeon/messages"
)

// MemoryStore is a Store that keeps everything in memory, for tests and
// short-lived programs. It has the same semantics as BadgerStore (validation,
// atomicity, deep copies in and out, messages.ErrClosed after Close) but
// nothing survives the process.
//
// A MemoryStore is safe for concurrent use by multiple goroutines. The zero
// value is not usable; call NewMemory.
type MemoryStore struct {
	mu      sync.RWMutex
	closed  bool
	records map[string]messages.AuthRecord
	current string
}

// NewMemory returns an empty MemoryStore.
func NewMemory() *MemoryStore {
	return &MemoryStore{records: make(map[string]messages.AuthRecord)}
}

// Load returns the stored state (records deep-copied, sorted by UID).
// After Close it returns messages.ErrClosed.
func (m *MemoryStore) Load(ctx context.Context) (State, error) {
	st, err := m.snapshot(ctx)
	if err != nil {
		return State{}, err
	}
	if len(st.Records) == 0 {
		st.Records = nil
	}
	return st, nil
}

// LoadPages streams the state as BadgerStore.LoadPages does: pages of at
// most pageSize records (<= 0: DefaultPageSize) of one snapshot, in UID
// order, then the current account. An error from page, or a done ctx
// (checked between pages), stops it and is returned as is. After Close it
// returns messages.ErrClosed.
func (m *MemoryStore) LoadPages(ctx context.Context, pageSize int, page func([]messages.AuthRecord) error) (string, error) {
	st, err := m.snapshot(ctx)
	if err != nil {
		return "", err
	}
	err = pages(st.Records, pageSize, func(p []messages.AuthRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return page(p)
	})
	if err != nil {
		return "", err
	}
	return st.Current, nil
}

// snapshot copies the state out (records sorted by UID).
func (m *MemoryStore) snapshot(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return State{}, messages.ErrClosed
	}
	st := State{Current: m.current, Records: make([]messages.AuthRecord, 0, len(m.records))}
	for _, r := range m.records {
		st.Records = append(st.Records, r.Clone())
	}
	sort.Slice(st.Records, func(i, j int) bool { return st.Records[i].UID < st.Records[j].UID })
	return st, nil
}

// Apply applies ch atomically (see Change and Store.Apply). After Close it
// returns messages.ErrClosed; a done ctx returns ctx.Err(). On any error
// nothing changed.
func (m *MemoryStore) Apply(ctx context.Context, ch Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return messages.ErrClosed
	}
	p, err := makePlan(ch, memView{m})
	if err != nil {
		return err
	}
	for _, uid := range p.del {
		delete(m.records, uid)
	}
	for _, r := range p.put {
		m.records[r.UID] = r // already a deep copy
	}
	if p.setCurrent {
		m.current = p.current
	}
	return nil
}

// Close releases the store's contents. Later Load and Apply calls return
// messages.ErrClosed. Close is idempotent and always returns nil.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.records = nil
	m.current = ""
	return nil
}

// memView answers makePlan's questions; the caller holds m.mu.
type memView struct{ m *MemoryStore }

func (v memView) has(uid string) (bool, error) {
	_, ok := v.m.records[uid]
	return ok, nil
}

func (v memView) current() (string, error) { return v.m.current, nil }
