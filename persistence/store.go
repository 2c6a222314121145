package persistence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// State is everything a Store holds.
type State struct {
	Records []messages.AuthRecord // sorted by UID
	Current string                // UID of the current account; "" = none
}

// Change is one atomic, durable change.
//
// A Change is applied as a whole or not at all. Put and Delete must not
// name the same UID, and neither may hold an empty UID (ErrInvalidChange).
// Deleting a UID that is not stored is not an error. Deleting the current
// account without naming a new one in SetCurrent leaves no current account,
// so State.Current always names a stored record or is "".
type Change struct {
	Put        []messages.AuthRecord // complete records to write (replace by UID)
	Delete     []string              // UIDs to remove
	SetCurrent *string               // nil = unchanged; pointer to "" = no current account
}

// Store holds pigeon's account records and the current-account pointer.
//
// Both implementations in this package (BadgerStore, MemoryStore) are safe
// for concurrent use by multiple goroutines; an implementation of your own
// must be too. Records go in and come out as deep copies: a caller may
// change what it passed to Apply or got from Load without affecting the
// store.
type Store interface {
	// Load returns the stored state (records deep-copied).
	Load(ctx context.Context) (State, error)
	// Apply writes ch in one transaction, synced to disk before it returns.
	// Setting Current to a UID that is neither stored nor in ch.Put is an error (ErrUnknownAccount), nothing written.
	Apply(ctx context.Context, ch Change) error
	// Close releases the store; later calls return messages.ErrClosed. Idempotent.
	Close() error
}

// PagedLoader is a Store that can stream its state in pages instead of
// returning it whole (see BadgerStore.LoadPages). Both stores of this
// package are PagedLoaders; use the function LoadPages to stream any Store.
type PagedLoader interface {
	Store
	// LoadPages calls page with successive pages of at most pageSize
	// records (<= 0: DefaultPageSize), sorted by UID across pages, all
	// from one consistent snapshot, then returns the current account. An
	// error from page stops it and is returned as is. page must not call
	// the store's methods.
	LoadPages(ctx context.Context, pageSize int, page func([]messages.AuthRecord) error) (current string, err error)
}

// DefaultPageSize is the page size of LoadPages when none is given.
const DefaultPageSize = 1024

// LoadPages streams s's state through page as PagedLoader.LoadPages does:
// with s's own LoadPages when s is a PagedLoader, else with one Load cut
// into pages. Safe for concurrent use if s is.
func LoadPages(ctx context.Context, s Store, pageSize int, page func([]messages.AuthRecord) error) (current string, err error) {
	if pl, ok := s.(PagedLoader); ok {
		return pl.LoadPages(ctx, pageSize, page)
	}
	st, err := s.Load(ctx)
	if err != nil {
		return "", err
	}
	if err := pages(st.Records, pageSize, page); err != nil {
		return "", err
	}
	return st.Current, nil
}

// pages calls page with successive slices of recs of at most pageSize
// records (<= 0: DefaultPageSize); each is its own slice.
func pages(recs []messages.AuthRecord, pageSize int, page func([]messages.AuthRecord) error) error {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	for len(recs) > 0 {
		n := min(pageSize, len(recs))
		if err := page(recs[:n:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// Compile-time interface checks.
var (
	_ PagedLoader = (*BadgerStore)(nil)
	_ PagedLoader = (*MemoryStore)(nil)
)

// Sentinel errors of this package. errors.Is matches them through every
// wrapper the package adds.
var (
	// ErrUnknownAccount: Change.SetCurrent names a UID that is neither
	// stored (and kept) nor in Change.Put. Nothing was written.
	ErrUnknownAccount = errors.New("pigeon/persistence: unknown account")
	// ErrInvalidChange: a Change is malformed (empty UID, a UID both put and
	// deleted). Nothing was written.
	ErrInvalidChange = errors.New("pigeon/persistence: invalid change")
	// ErrWrongKey: the store's directory was encrypted with another key (or
	// not encrypted, or encrypted while encryption is disabled). The error
	// names the directory.
	ErrWrongKey = errors.New("pigeon/persistence: wrong encryption key")
	// ErrInvalidKey: an encryption key is malformed: not 16, 24 or 32 bytes,
	// or not valid base64 (PIGEON_STORE_KEY, key file).
	ErrInvalidKey = errors.New("pigeon/persistence: invalid encryption key")
	// ErrLocked: the store's directory is held by another open store
	// (another process, or another OpenBadger in this one).
	ErrLocked = errors.New("pigeon/persistence: store directory is locked")
	// ErrCorrupt: a stored value cannot be decoded (see DecodeError), or
	// the store's files are damaged: OpenBadger refuses them with an error
	// naming the directory and what to do.
	ErrCorrupt = errors.New("pigeon/persistence: corrupt stored value")
)

// DecodeError reports a stored value that cannot be decoded. It matches
// ErrCorrupt with errors.Is and unwraps to the cause. Nothing is skipped
// silently: Load fails as a whole. Safe for concurrent reads.
type DecodeError struct {
	Key string // the badger key, e.g. "rec/<uid>"
	Err error  // the cause
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("pigeon/persistence: cannot decode stored value %q: %v", e.Key, e.Err)
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// plan is a validated Change: what to write, and the new current pointer.
type plan struct {
	put        []messages.AuthRecord // deep copies, last write per UID wins, sorted by UID
	del        []string
	setCurrent bool   // whether the current pointer changes
	current    string // the new current pointer when setCurrent
}

// view is what planning needs to know about the stored state.
type view interface {
	has(uid string) (bool, error)
	current() (string, error)
}

// makePlan validates ch against the stored state v and returns what to write.
func makePlan(ch Change, v view) (plan, error) {
	pr, err := prepare(ch)
	if err != nil {
		return plan{}, err
	}
	return pr.resolve(v)
}

// prepared is a Change checked on its own, before the stored state is
// known: what resolve needs to finish the plan. Preparing needs no lock,
// so a BadgerStore's callers prepare (and encode) their changes in
// parallel and leave its committer only the checks against the state.
type prepared struct {
	plan                // put and del final; setCurrent and current not yet
	setTo       *string // Change.SetCurrent
	hasDeletion bool    // del is not empty
}

// prepare checks what ch says on its own (ErrInvalidChange) and copies
// its records. It sorts instead of building maps: a change is usually one
// record.
func prepare(ch Change) (prepared, error) {
	var p prepared
	if len(ch.Put) > 0 {
		p.put = make([]messages.AuthRecord, 0, len(ch.Put))
	}
	for _, r := range ch.Put {
		if r.UID == "" {
			return prepared{}, fmt.Errorf("%w: a record in Put has an empty UID", ErrInvalidChange)
		}
		for _, t := range []time.Time{r.ExpiresAt, r.IssuedAt} {
			if y := t.Year(); y < 0 || y > 9999 {
				return prepared{}, fmt.Errorf("%w: record %q has a time outside years 0-9999", ErrInvalidChange, r.UID)
			}
		}
		p.put = append(p.put, r)
	}
	// Stable: of the records of one UID, the last in ch.Put comes last
	// and wins.
	if len(p.put) > 1 {
		sort.SliceStable(p.put, func(i, j int) bool { return p.put[i].UID < p.put[j].UID })
	}
	w := 0
	for i, r := range p.put {
		if i+1 < len(p.put) && p.put[i+1].UID == r.UID {
			continue
		}
		p.put[w] = cloneRecord(r)
		w++
	}
	clear(p.put[w:])
	p.put = p.put[:w]
	for _, uid := range ch.Delete {
		if uid == "" {
			return prepared{}, fmt.Errorf("%w: Delete holds an empty UID", ErrInvalidChange)
		}
	}
	if len(ch.Delete) > 0 {
		p.del = slices.Compact(slices.Sorted(slices.Values(ch.Delete)))
	}
	for _, uid := range p.del {
		if p.puts(uid) {
			return prepared{}, fmt.Errorf("%w: UID %q is both put and deleted", ErrInvalidChange, uid)
		}
	}
	p.setTo, p.hasDeletion = ch.SetCurrent, len(p.del) > 0
	return p, nil
}

// resolve checks p against the stored state v (ErrUnknownAccount) and
// returns the plan. It does not change p.
func (p prepared) resolve(v view) (plan, error) {
	out := p.plan
	switch {
	case p.setTo != nil && *p.setTo == "":
		out.setCurrent, out.current = true, ""
	case p.setTo != nil:
		uid := *p.setTo
		ok := p.puts(uid)
		if !ok && !p.deletes(uid) {
			stored, err := v.has(uid)
			if err != nil {
				return plan{}, err
			}
			ok = stored
		}
		if !ok {
			return plan{}, fmt.Errorf("%w: cannot make %q current: no such account", ErrUnknownAccount, uid)
		}
		out.setCurrent, out.current = true, uid
	case p.hasDeletion:
		cur, err := v.current()
		if err != nil {
			return plan{}, err
		}
		if cur != "" && p.deletes(cur) {
			out.setCurrent, out.current = true, ""
		}
	}
	return out, nil
}

// puts reports whether p puts uid.
func (p prepared) puts(uid string) bool {
	i := sort.Search(len(p.put), func(i int) bool { return p.put[i].UID >= uid })
	return i < len(p.put) && p.put[i].UID == uid
}

// deletes reports whether p deletes uid.
func (p prepared) deletes(uid string) bool {
	i := sort.SearchStrings(p.del, uid)
	return i < len(p.del) && p.del[i] == uid
}

// cloneRecord deep-copies r and drops the monotonic clock reading of its
// times, so a record compares the same before and after a round trip.
func cloneRecord(r messages.AuthRecord) messages.AuthRecord {
	r = r.Clone()
	r.ExpiresAt = r.ExpiresAt.Round(0)
	r.IssuedAt = r.IssuedAt.Round(0)
	return r
}
