package guardactor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Guard decides whether its protected routes may be shown. Check may be
// slow (a network call) and may fail: an error never counts as "passes".
//
// Implementations must be safe for concurrent use and should honour ctx:
// pigeon gives up waiting when ctx ends, but a Check that ignores ctx keeps
// its goroutine alive until it returns.
type Guard interface {
	// Name is the registered guard name used in the route tree.
	Name() string
	// Check reports whether the guard passes.
	Check(ctx context.Context) (bool, error)
}

type funcGuard struct {
	name  string
	check func(context.Context) (bool, error)
}

func (g funcGuard) Name() string                            { return g.name }
func (g funcGuard) Check(ctx context.Context) (bool, error) { return g.check(ctx) }

// GuardFunc returns a Guard named name whose Check calls check. It is safe
// for concurrent use when check is.
func GuardFunc(name string, check func(ctx context.Context) (bool, error)) Guard {
	return funcGuard{name: name, check: check}
}

// errGuardTimeout is the cause recorded when a check outlives its timeout.
var errGuardTimeout = errors.New("timed out")

// checkOne runs g.Check with timeout and turns a panic into an error. It
// returns when the check returns or ctx/timeout ends, whichever is first; in
// the latter case the check's goroutine ends when Check returns (it can
// only write into a buffered channel nobody reads).
func checkOne(ctx context.Context, g Guard, timeout time.Duration) (bool, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	type result struct {
		pass bool
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r = result{err: fmt.Errorf("panic: %v", p)}
			}
			ch <- r
		}()
		r.pass, r.err = g.Check(ctx)
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return false, &GuardError{Guard: g.Name(), Kind: ErrGuardCheck, Err: r.err}
		}
		return r.pass, nil
	case <-ctx.Done():
		cause := ctx.Err()
		if errors.Is(cause, context.DeadlineExceeded) {
			cause = fmt.Errorf("%w after %v: %w", errGuardTimeout, timeout, cause)
		}
		return false, &GuardError{Guard: g.Name(), Kind: ErrGuardCheck, Err: cause}
	}
}

// CheckGuards runs the Check of every guard concurrently, each bounded by
// timeout (<= 0: only ctx bounds it), with panics turned into errors. It
// returns the snapshot of the guards that answered and, when some failed, an
// error joining one *GuardError (matching ErrGuardCheck) per failed guard;
// failed guards are absent from the snapshot. Safe for concurrent use.
func CheckGuards(ctx context.Context, guards []Guard, timeout time.Duration) (Snapshot, error) {
	snap := make(Snapshot, len(guards))
	if len(guards) == 1 {
		p, err := checkOne(ctx, guards[0], timeout)
		if err != nil {
			return snap, err
		}
		snap[guards[0].Name()] = p
		return snap, nil
	}
	type result struct {
		name string
		pass bool
		err  error
	}
	ch := make(chan result, len(guards))
	for _, g := range guards {
		go func() {
			p, err := checkOne(ctx, g, timeout)
			ch <- result{name: g.Name(), pass: p, err: err}
		}()
	}
	var errs []error
	for range guards {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		snap[r.name] = r.pass
	}
	return snap, errors.Join(errs...)
}
