package guardactor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon/messages"
)

// ActorOption configures NewProps.
type ActorOption interface{ applyActor(*actorConfig) }

type actorOptionFunc func(*actorConfig)

func (f actorOptionFunc) applyActor(c *actorConfig) { f(c) }

type actorConfig struct {
	guards  []Guard
	timeout time.Duration
	initial Snapshot
	logger  *zap.Logger
}

// WithGuards gives the actor Guard implementations to check itself: at
// start and on each messages.RecheckGuards, concurrently, off the mailbox,
// each bounded by the check timeout and with panics recovered; the results
// come back to the actor as a message. Guards not given here get their
// state from messages.GuardChanged only. Zero value (option not given): no
// checks, every state is pushed.
func WithGuards(guards ...Guard) ActorOption {
	return actorOptionFunc(func(c *actorConfig) { c.guards = append(c.guards, guards...) })
}

// WithActorCheckTimeout bounds each guard check run by the actor. Zero value
// (option not given) or d <= 0 means 5s.
func WithActorCheckTimeout(d time.Duration) ActorOption {
	return actorOptionFunc(func(c *actorConfig) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithInitialStates seeds the guards' states (copied). Zero value (option
// not given): every state unknown until reported.
func WithInitialStates(s Snapshot) ActorOption {
	return actorOptionFunc(func(c *actorConfig) {
		c.initial = make(Snapshot, len(s))
		for k, v := range s {
			c.initial[k] = v
		}
	})
}

// WithActorLogger sets the actor's logger. Zero value (option not given):
// zap.NewNop().
func WithActorLogger(l *zap.Logger) ActorOption {
	return actorOptionFunc(func(c *actorConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// NewProps returns the Props of a guard actor for router. The actor owns the
// router, the current location and the guards' last states; it speaks the
// protocol in messages/guard.go (Navigate, GuardChanged,
// SubscribeRedirects, UnsubscribeRedirects, GetLocation, RecheckGuards,
// GetGuardStates). A restart re-runs the producer: states are reset to the
// initial ones and the checks run again; subscriptions end (their channels
// close, Err wraps messages.ErrActorRestarted) and parked Navigate and
// RecheckGuards requests get that error. Props are safe to spawn several times; each actor is
// independent.
func NewProps(router *Router, opts ...ActorOption) (*actor.Props, error) {
	if router == nil {
		return nil, errors.New("pigeon/guardactor: NewProps: nil router")
	}
	cfg := actorConfig{timeout: 5 * time.Second, logger: zap.NewNop()}
	for _, o := range opts {
		o.applyActor(&cfg)
	}
	seen := map[string]bool{}
	for _, g := range cfg.guards {
		if g == nil {
			return nil, errors.New("pigeon/guardactor: NewProps: nil guard")
		}
		if _, ok := router.guardIdx[g.Name()]; !ok {
			return nil, &ConfigError{Kind: ErrGuardNotRegistered, Guard: g.Name(), Detail: "guard implementation for an unregistered guard"}
		}
		if seen[g.Name()] {
			return nil, fmt.Errorf("pigeon/guardactor: NewProps: guard %q given twice", g.Name())
		}
		seen[g.Name()] = true
	}
	for name := range cfg.initial {
		if _, ok := router.guardIdx[name]; !ok {
			return nil, &ConfigError{Kind: ErrGuardNotRegistered, Guard: name, Detail: "initial state for an unregistered guard"}
		}
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &guardActor{router: router, cfg: cfg}
	}), nil
}

const (
	defaultSubBuffer = 16
	maxSubBuffer     = 1024
)

// checkDone carries the result of one run of guard checks back to the
// actor.
type checkDone struct {
	from *guardActor // the incarnation that ran the checks
	gen  uint64
	snap Snapshot
	err  error
}

type parkedNav struct {
	sender *actor.PID
	msg    *messages.Navigate
}

type subscriber struct {
	ch      chan *messages.Redirected
	dropped uint64

	mu  sync.Mutex
	err error // why ch was closed
}

// end records why the subscription ended and closes its channel. Actor
// only.
func (s *subscriber) end(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.ch)
}

func (s *subscriber) errOf() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// guardActor is the guard evaluator actor. All fields are owned by the
// actor's mailbox goroutine, except the check goroutines' wait group.
type guardActor struct {
	router *Router
	cfg    actorConfig

	passes map[string]bool
	errs   map[string]error

	current  string
	notFound bool

	subs   map[uint64]*subscriber
	nextID uint64
	seq    uint64

	checkGen      uint64
	checking      bool
	pushedDuring  map[string]bool
	parked        []parkedNav
	recheckWaiter []*actor.PID

	sys    *actor.ActorSystem
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	crash any // the panic about to restart this incarnation
}

// Receive handles the protocol.
func (a *guardActor) Receive(c actor.Context) {
	defer func() {
		if r := recover(); r != nil {
			a.crash = r // reported on Restarting; the supervisor decides
			panic(r)
		}
	}()
	switch m := c.Message().(type) {
	case *actor.Started:
		a.start(c)
	case *actor.Stopping:
		a.stop(fmt.Errorf("pigeon/guardactor: actor stopping: %w", messages.ErrClosed))
	case *actor.Restarting:
		err := fmt.Errorf("pigeon/guardactor: %w", messages.ErrActorRestarted)
		if a.crash != nil {
			err = fmt.Errorf("pigeon/guardactor: %w after a panic: %v", messages.ErrActorRestarted, a.crash)
		}
		a.stop(err)
	case *messages.Navigate:
		if m == nil {
			c.Respond(errors.New("pigeon/guardactor: nil Navigate"))
			return
		}
		if a.checking {
			a.parked = append(a.parked, parkedNav{sender: c.Sender(), msg: m})
			return
		}
		c.Respond(a.navigate(m))
	case *messages.GuardChanged:
		a.guardChanged(c, m)
	case *checkDone:
		if m.from == a { // not one of an earlier incarnation's runs
			a.checkDone(c, m)
		}
	case *messages.SubscribeRedirects:
		a.subscribe(c, m)
	case *messages.UnsubscribeRedirects:
		s, ok := a.subs[m.ID]
		if ok {
			s.end(messages.ErrClosed)
			delete(a.subs, m.ID)
		}
		c.Respond(&messages.UnsubscribedRedirects{Found: ok})
	case *messages.GetLocation:
		c.Respond(&messages.CurrentLocation{Location: a.current, NotFound: a.notFound})
	case *messages.GetGuardStates:
		c.Respond(a.states())
	case *messages.RecheckGuards:
		if c.Sender() != nil {
			a.recheckWaiter = append(a.recheckWaiter, c.Sender())
		}
		a.runChecks(c)
	}
}

func (a *guardActor) start(c actor.Context) {
	a.passes = make(map[string]bool, len(a.router.guards))
	for k, v := range a.cfg.initial {
		a.passes[k] = v
	}
	a.errs = map[string]error{}
	a.subs = map[uint64]*subscriber{}
	a.sys = c.ActorSystem()
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.runChecks(c)
}

// stop ends this incarnation (Stopping, Restarting): the checks are
// cancelled and waited for, every subscription ends with err, and every
// parked Navigate and RecheckGuards gets err.
func (a *guardActor) stop(err error) {
	if a.cancel != nil {
		a.cancel()
	}
	// Each check returns at once when its context ends (checkOne), so this
	// wait is short.
	a.wg.Wait()
	for id, s := range a.subs {
		s.end(err)
		delete(a.subs, id)
	}
	for _, p := range a.parked {
		if p.sender != nil {
			a.sendTo(p.sender, err)
		}
	}
	a.parked = nil
	for _, w := range a.recheckWaiter {
		a.sendTo(w, err)
	}
	a.recheckWaiter = nil
}

// sendTo sends a reply to a stored sender (Respond only reaches the
// sender of the message being handled).
func (a *guardActor) sendTo(pid *actor.PID, msg any) {
	if a.sys != nil {
		a.sys.Root.Send(pid, msg)
	}
}

// runChecks starts one run of the configured guards' checks in a goroutine
// owned by the actor (waited for on Stopping).
func (a *guardActor) runChecks(c actor.Context) {
	if len(a.cfg.guards) == 0 {
		a.answerRecheck()
		return
	}
	a.checkGen++
	gen := a.checkGen
	a.checking = true
	a.pushedDuring = map[string]bool{}
	self, sys, guards, timeout, ctx := c.Self(), c.ActorSystem(), a.cfg.guards, a.cfg.timeout, a.ctx
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		snap, err := CheckGuards(ctx, guards, timeout)
		sys.Root.Send(self, &checkDone{from: a, gen: gen, snap: snap, err: err})
	}()
}

func (a *guardActor) checkDone(c actor.Context, m *checkDone) {
	if m.gen != a.checkGen {
		return // a newer run is in flight
	}
	a.checking = false
	var gerrs []*GuardError
	collectGuardErrors(m.err, &gerrs)
	for _, g := range a.cfg.guards {
		name := g.Name()
		if a.pushedDuring[name] {
			continue // a GuardChanged is newer than this check
		}
		if p, ok := m.snap[name]; ok {
			a.passes[name] = p
			delete(a.errs, name)
			continue
		}
		var cause error = errors.New("no result")
		for _, ge := range gerrs {
			if ge.Guard == name {
				cause = ge
			}
		}
		delete(a.passes, name)
		a.errs[name] = cause
		a.cfg.logger.Warn("pigeon/guardactor: guard check failed", zap.String("guard", name), zap.Error(cause))
	}
	a.answerRecheck()
	parked := a.parked
	a.parked = nil
	for _, p := range parked {
		if p.sender != nil {
			c.Send(p.sender, a.navigate(p.msg))
		}
	}
	a.reevaluate()
}

func collectGuardErrors(err error, out *[]*GuardError) {
	if err == nil {
		return
	}
	var ge *GuardError
	if errors.As(err, &ge) {
		*out = append(*out, ge)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if _, isGE := e.(*GuardError); isGE {
				*out = append(*out, e.(*GuardError))
			}
		}
	}
}

func (a *guardActor) answerRecheck() {
	if len(a.recheckWaiter) == 0 {
		return
	}
	for _, w := range a.recheckWaiter {
		a.sendTo(w, a.states())
	}
	a.recheckWaiter = nil
}

func (a *guardActor) states() *messages.GuardStates {
	s := &messages.GuardStates{Passes: make(map[string]bool, len(a.passes)), Errors: make(map[string]string, len(a.errs))}
	for k, v := range a.passes {
		s.Passes[k] = v
	}
	for k, v := range a.errs {
		s.Errors[k] = v.Error()
	}
	return s
}

// passes implements guardStates over the actor's last known states.
func (a *guardActor) passesOf(g int) (bool, error) {
	name := a.router.guards[g]
	if e, ok := a.errs[name]; ok {
		return false, &GuardError{Guard: name, Kind: ErrGuardState, Err: e}
	}
	p, ok := a.passes[name]
	if !ok {
		return false, &GuardError{Guard: name, Kind: ErrGuardState, Err: errors.New("no state reported yet")}
	}
	return p, nil
}

func (a *guardActor) navigate(m *messages.Navigate) any {
	s, err := a.router.settle(m.Location, guardStates{r: a.router, a: a}, evalConfig{neglectContinue: m.NeglectContinue})
	if err != nil {
		return err
	}
	a.current, a.notFound = s.Location, s.NotFound
	out := &messages.Navigated{Requested: m.Location, Location: s.Location, NotFound: s.NotFound}
	for _, h := range s.Hops {
		out.Hops = append(out.Hops, messages.RedirectHop{To: h.Redirect, Rule: h.Rule.String(), Guard: h.Guard})
	}
	return out
}

func (a *guardActor) guardChanged(c actor.Context, m *messages.GuardChanged) {
	if m == nil {
		if c.Sender() != nil {
			c.Respond(errors.New("pigeon/guardactor: nil GuardChanged"))
		}
		return
	}
	if _, ok := a.router.guardIdx[m.Guard]; !ok {
		err := &ConfigError{Kind: ErrGuardNotRegistered, Guard: m.Guard, Detail: "GuardChanged for an unregistered guard"}
		if c.Sender() != nil {
			c.Respond(err)
		} else {
			a.cfg.logger.Warn("pigeon/guardactor: ignored GuardChanged", zap.Error(err))
		}
		return
	}
	if a.checking {
		a.pushedDuring[m.Guard] = true
	}
	if m.Err != nil {
		delete(a.passes, m.Guard)
		a.errs[m.Guard] = m.Err
	} else {
		a.passes[m.Guard] = m.Passes
		delete(a.errs, m.Guard)
	}
	moved := false
	if !a.checking {
		moved = a.reevaluate()
	}
	if c.Sender() != nil {
		c.Respond(&messages.GuardChangedAck{Location: a.current, Redirected: moved})
	}
}

// reevaluate settles the current location again and publishes the move, if
// any. It reports whether the location moved.
func (a *guardActor) reevaluate() bool {
	if a.current == "" {
		return false
	}
	s, err := a.router.settle(a.current, guardStates{r: a.router, a: a}, evalConfig{})
	if err != nil {
		a.cfg.logger.Warn("pigeon/guardactor: re-evaluation failed; location kept", zap.String("location", a.current), zap.Error(err))
		return false
	}
	if len(s.Hops) == 0 {
		return false
	}
	from := a.current
	a.current, a.notFound = s.Location, s.NotFound
	a.seq++
	first := s.Hops[0]
	for _, sub := range a.subs {
		ev := &messages.Redirected{Seq: a.seq, From: from, To: s.Location, Rule: first.Rule.String(), Guard: first.Guard}
		a.publish(sub, ev)
	}
	return true
}

// publish delivers ev without blocking: when the queue is full the oldest
// queued event is dropped to make room; Dropped of the next queued event
// counts every event lost since the one the subscriber last received.
func (a *guardActor) publish(s *subscriber, ev *messages.Redirected) {
	for {
		ev.Dropped = s.dropped
		select {
		case s.ch <- ev:
			s.dropped = 0
			return
		default:
		}
		select {
		case old := <-s.ch:
			// the events old stood for are lost too
			s.dropped += old.Dropped + 1
		default:
		}
	}
}

func (a *guardActor) subscribe(c actor.Context, m *messages.SubscribeRedirects) {
	n := defaultSubBuffer
	if m != nil && m.Buffer > 0 {
		n = min(m.Buffer, maxSubBuffer)
	}
	a.nextID++
	s := &subscriber{ch: make(chan *messages.Redirected, n)}
	a.subs[a.nextID] = s
	c.Respond(&messages.RedirectSubscription{ID: a.nextID, C: s.ch, Err: s.errOf})
}
