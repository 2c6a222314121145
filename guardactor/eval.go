package guardactor

import (
	"fmt"
	"net/url"
	"strings"
)

// Snapshot holds the result of each guard's check for one evaluation:
// guard name -> passes. A guard the evaluation needs but that is missing is
// an ErrGuardState error, never a pass. Read-only during evaluation; safe
// for concurrent evaluations as long as nobody writes it.
type Snapshot map[string]bool

// Rule names the step of the algorithm that produced a resolution.
type Rule uint8

const (
	// RuleNone: no redirect.
	RuleNone Rule = iota
	// RuleDiscard: the destination is discarded by passing guards; go to
	// continue, else to the follow-up route (G1).
	RuleDiscard
	// RuleShield: the destination is the shield of its passing guard(s); go
	// to continue, or drop a continue equal to the shield itself (G3).
	RuleShield
	// RuleBlocked: an enclosing GuardShell's guard blocks; go to its shield
	// (G4).
	RuleBlocked
	// RuleContinue: the destination carries only a continue param; follow
	// it (G5).
	RuleContinue
	// RuleExplicit: the route's own Redirect.
	RuleExplicit
	// RuleAlias: a path alias redirects to its canonical path.
	RuleAlias
	// RuleUnsafeContinue: a continue value that is not a local path was
	// removed; the cleaned location is the redirect.
	RuleUnsafeContinue
)

var ruleNames = [...]string{"none", "discard", "shield", "blocked", "continue", "explicit", "alias", "unsafe-continue"}

func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return fmt.Sprintf("Rule(%d)", uint8(r))
}

// Resolution is the result of evaluating one location once.
type Resolution struct {
	// Redirect is where to go instead; "" means stay. Always a local path.
	Redirect string
	// NotFound is true when no route matches the path; guards were not
	// consulted.
	NotFound bool
	// Rule is the step that decided the redirect (RuleNone when none).
	Rule Rule
	// Guard is the guard whose state decided it ("" for RuleNone,
	// RuleExplicit, RuleAlias, RuleUnsafeContinue and RuleContinue).
	Guard string
	// Route is the matched destination route's name (its path when
	// unnamed); "" when NotFound.
	Route string
}

// Redirected reports whether r carries a redirect.
func (r Resolution) Redirected() bool { return r.Redirect != "" }

// EvalOption configures one evaluation.
type EvalOption interface{ apply(*evalConfig) }

type evalConfig struct {
	neglectContinue bool
}

type neglectOpt bool

func (n neglectOpt) apply(c *evalConfig) { c.neglectContinue = bool(n) }

// NeglectContinue makes a blocking guard not store the destination as
// continue (Dart's neglectContinue(() {...}), e.g. for a logout). It applies
// to this evaluation only.
func NeglectContinue(on bool) EvalOption { return neglectOpt(on) }

// guardStates answers a guard's state by index, from a Snapshot or from
// the guard actor's state. A concrete type: no allocation per evaluation.
type guardStates struct {
	r    *Router
	snap Snapshot
	a    *guardActor // when set, states come from the actor
}

func snapStates(r *Router, snap Snapshot) guardStates { return guardStates{r: r, snap: snap} }

func (s guardStates) passes(g int) (bool, error) {
	if s.a != nil {
		return s.a.passesOf(g)
	}
	p, ok := s.snap[s.r.guards[g]]
	if !ok {
		return false, &GuardError{Guard: s.r.guards[g], Kind: ErrGuardState, Err: errMissingFromSnapshot}
	}
	return p, nil
}

var errMissingFromSnapshot = fmt.Errorf("not in the snapshot")

// Evaluate resolves one location once (one go_router redirect pass) with
// the given guard states. location is an absolute path with an optional
// percent-encoded query. Safe for concurrent use.
func (r *Router) Evaluate(location string, guards Snapshot, opts ...EvalOption) (Resolution, error) {
	return r.evaluate(location, snapStates(r, guards), evalOptions(opts))
}

func evalOptions(opts []EvalOption) evalConfig {
	if len(opts) == 0 {
		return evalConfig{}
	}
	var cfg evalConfig
	for _, o := range opts {
		o.apply(&cfg)
	}
	return cfg
}

func (r *Router) evaluate(location string, st guardStates, cfg evalConfig) (Resolution, error) {
	var buf [maxInlineSegs]string
	l, err := parseLoc(location, buf[:])
	if err != nil {
		return Resolution{}, err
	}
	leaf := r.match(&l)
	if leaf == nil {
		return Resolution{NotFound: true}, nil
	}
	res, err := r.resolve(&l, leaf, st, cfg)
	if err != nil {
		return Resolution{}, err
	}
	res.Route = leaf.label
	if res.Redirect == "" && l.cleaned {
		res.Redirect, res.Rule, res.Guard = l.raw, RuleUnsafeContinue, ""
	}
	if res.Redirect != "" && !IsLocalPath(res.Redirect) {
		return Resolution{}, fmt.Errorf("%w: %q from %q", ErrUnsafeRedirect, res.Redirect, location)
	}
	return res, nil
}

// Match reports the name (or path, when unnamed) of the route that
// location resolves to, and false when none matches. Safe for concurrent
// use.
func (r *Router) Match(location string) (string, bool, error) {
	var buf [maxInlineSegs]string
	l, err := parseLoc(location, buf[:])
	if err != nil {
		return "", false, err
	}
	if leaf := r.match(&l); leaf != nil {
		return leaf.label, true, nil
	}
	return "", false, nil
}

// Consults returns the guards an evaluation of location may read (empty
// when the destination is not guarded or not found), so that callers check
// only those. Safe for concurrent use.
func (r *Router) Consults(location string) ([]string, error) {
	var buf [maxInlineSegs]string
	l, err := parseLoc(location, buf[:])
	if err != nil {
		return nil, err
	}
	leaf := r.match(&l)
	if leaf == nil {
		return nil, nil
	}
	out := make([]string, len(leaf.consults))
	for i, g := range leaf.consults {
		out[i] = r.guards[g]
	}
	return out, nil
}

func (r *Router) match(l *loc) *route {
	return matchList(&r.top, l.segs, 0)
}

func matchList(list *childList, segs []string, depth int) *route {
	for _, c := range list.candidates(segs, depth) {
		if len(c.pattern) > len(segs) {
			continue
		}
		ok := true
		for i := c.ownFrom; i < len(c.pattern); i++ {
			if s := c.pattern[i]; s.param == "" && s.lit != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if len(c.pattern) == len(segs) {
			return c
		}
		if m := matchList(&c.kids, segs, len(c.pattern)); m != nil {
			return m
		}
	}
	return nil
}

// resolve runs the go_router redirect chain: for each matched route,
// outermost first, the guard logic (always about the leaf) and then the
// route's own redirect.
func (r *Router) resolve(l *loc, leaf *route, st guardStates, cfg evalConfig) (Resolution, error) {
	if leaf.parent != nil {
		g, err := r.guard(l, leaf, st, cfg, false)
		if err != nil {
			return Resolution{}, err
		}
		// ancestors outermost first
		var stack [maxInlineSegs]*route
		chain := stack[:0]
		for a := leaf.parent; a != nil; a = a.parent {
			chain = append(chain, a)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			res := g
			if res.Redirect == "" && chain[i].redirect != "" {
				res = Resolution{Redirect: chain[i].redirect, Rule: RuleExplicit}
			}
			if res.Redirect != "" && !SameLocation(res.Redirect, l.raw) {
				return res, nil
			}
		}
	}
	res, err := r.guard(l, leaf, st, cfg, true)
	if err != nil {
		return Resolution{}, err
	}
	if res.Redirect == "" {
		switch {
		case leaf.redirect != "":
			res = Resolution{Redirect: leaf.redirect, Rule: RuleExplicit}
		case leaf.alias != nil:
			p, err := r.fill(leaf.alias, l, leaf)
			if err != nil {
				return Resolution{}, err
			}
			res = Resolution{Redirect: withQuery(p, l.rawQuery), Rule: RuleAlias}
		}
	}
	if res.Redirect != "" && !SameLocation(res.Redirect, l.raw) {
		return res, nil
	}
	return Resolution{}, nil
}

// guard is the GUARD step of the algorithm for leaf; atLeaf says whether
// the executing route is the leaf.
func (r *Router) guard(l *loc, leaf *route, st guardStates, cfg evalConfig, atLeaf bool) (Resolution, error) {
	if !leaf.aware {
		return Resolution{}, nil
	}
	if leaf.unregistered != "" {
		return Resolution{}, &ConfigError{Kind: ErrGuardNotRegistered, Guard: leaf.unregistered, Routes: []string{leaf.label}, Detail: "used by a GuardShell above the destination"}
	}
	// G1 discard
	if len(leaf.discards) > 0 {
		all := true
		for _, g := range leaf.discards {
			p, err := st.passes(g)
			if err != nil {
				return Resolution{}, err
			}
			if !p {
				all = false
				break
			}
		}
		if all {
			g0 := leaf.discards[0]
			f := r.follow[g0]
			switch {
			case f == nil || f == leaf || leaf.hasAncestor(f):
				// Deviation from Dart (which returns null here without
				// looking at GuardShells): the enclosing guards still apply.
				return r.blocking(l, leaf, st, cfg)
			case l.cont != "":
				return Resolution{Redirect: l.cont, Rule: RuleDiscard, Guard: r.guards[g0]}, nil
			default:
				p, err := r.fill(f, l, leaf)
				if err != nil {
					return Resolution{}, err
				}
				return Resolution{Redirect: withQuery(p, l.rawQuery), Rule: RuleDiscard, Guard: r.guards[g0]}, nil
			}
		}
	}
	// G3 shield
	if len(leaf.shieldOf) > 0 {
		preBlocks := false
		for _, e := range leaf.enclosing {
			if containsInt(leaf.shieldOf, e.guard) {
				break
			}
			p, err := st.passes(e.guard)
			if err != nil {
				return Resolution{}, err
			}
			if !p {
				preBlocks = true
				break
			}
		}
		if !preBlocks {
			blockedBy := -1
			for _, g := range leaf.shieldOf {
				p, err := st.passes(g)
				if err != nil {
					return Resolution{}, err
				}
				if !p {
					blockedBy = g
					break
				}
			}
			if blockedBy >= 0 {
				if l.cont != "" && (l.cont == l.rawPath || l.cont == l.path) {
					return Resolution{Redirect: withQuery(l.rawPath, l.queryWithoutContinue()), Rule: RuleShield, Guard: r.guards[blockedBy]}, nil
				}
				return Resolution{}, nil
			}
			// all S pass: 0.0.14 - every enclosing guard is still evaluated.
			b, err := r.firstBlocking(leaf, st)
			if err != nil {
				return Resolution{}, err
			}
			if b < 0 {
				if l.cont == "" {
					return Resolution{}, nil
				}
				return Resolution{Redirect: l.cont, Rule: RuleShield, Guard: r.guards[leaf.shieldOf[0]]}, nil
			}
		}
	}
	// G4 blocking
	res, err := r.blocking(l, leaf, st, cfg)
	if err != nil || res.Redirect != "" {
		return res, err
	}
	// G5 leaf continue
	if atLeaf && !l.hasOther && l.cont != "" {
		return Resolution{Redirect: l.cont, Rule: RuleContinue}, nil
	}
	return Resolution{}, nil
}

func (rt *route) hasAncestor(a *route) bool {
	for p := rt.parent; p != nil; p = p.parent {
		if p == a {
			return true
		}
	}
	return false
}

// firstBlocking returns the index into leaf.enclosing of the first blocking
// guard, or -1.
func (r *Router) firstBlocking(leaf *route, st guardStates) (int, error) {
	for i, e := range leaf.enclosing {
		p, err := st.passes(e.guard)
		if err != nil {
			return -1, err
		}
		if !p {
			return i, nil
		}
	}
	return -1, nil
}

// blocking is G4: the shield of the first blocking enclosing guard.
func (r *Router) blocking(l *loc, leaf *route, st guardStates, cfg evalConfig) (Resolution, error) {
	i, err := r.firstBlocking(leaf, st)
	if err != nil || i < 0 {
		return Resolution{}, err
	}
	e := leaf.enclosing[i]
	target := r.shield[e.guard]
	mode := e.mode
	if cfg.neglectContinue || leaf.ignoreCnt {
		mode = PersistIgnore
	}
	tp, err := r.fill(target, l, leaf)
	if err != nil {
		return Resolution{}, err
	}
	var red string
	switch {
	case (l.cont != "" && tp == l.cont) || mode == PersistClear:
		red = withQuery(tp, l.queryWithoutContinue())
	case mode == PersistStore:
		c := l.cont
		if c == "" {
			c = l.raw
		}
		red = tp + "?continue=" + EncodeQueryComponent(c)
	default:
		red = withQuery(tp, l.rawQuery)
	}
	return Resolution{Redirect: red, Rule: RuleBlocked, Guard: r.guards[e.guard]}, nil
}

// fill builds target's path with parameters taken from the current match.
func (r *Router) fill(target *route, l *loc, leaf *route) (string, error) {
	if len(target.pattern) == 0 {
		return "/", nil
	}
	var b strings.Builder
	for _, s := range target.pattern {
		b.WriteByte('/')
		if s.param == "" {
			b.WriteString(s.enc)
			continue
		}
		v, ok := paramValue(s.param, l, leaf)
		if !ok {
			return "", &ParamError{Route: target.label, Param: s.param}
		}
		b.WriteString(url.PathEscape(v))
	}
	return b.String(), nil
}

func paramValue(name string, l *loc, leaf *route) (string, bool) {
	for rt := leaf; rt != nil; rt = rt.parent {
		for i, s := range rt.pattern {
			if s.param == name && i < len(l.segs) {
				return l.segs[i], true
			}
		}
	}
	return "", false
}

// Settled is the final location after following redirects.
type Settled struct {
	// Location is where navigation ends ("" never; the input when no
	// redirect happened).
	Location string
	// NotFound is true when Location matches no route.
	NotFound bool
	// Hops are the redirects followed, in order.
	Hops []Resolution
}

// Settle evaluates location and follows redirects with the same guard
// states until none is produced (what go_router shows after settling). A
// repeated location or more than the redirect limit (WithMaxRedirects) is a
// *LoopError showing the chain. Safe for concurrent use.
func (r *Router) Settle(location string, guards Snapshot, opts ...EvalOption) (Settled, error) {
	return r.settle(location, snapStates(r, guards), evalOptions(opts))
}

func (r *Router) settle(location string, st guardStates, cfg evalConfig) (Settled, error) {
	out := Settled{Location: location}
	chain := []string{location}
	for {
		res, err := r.evaluate(out.Location, st, cfg)
		if err != nil {
			return Settled{}, err
		}
		if res.NotFound {
			out.NotFound = true
			return out, nil
		}
		if res.Redirect == "" {
			return out, nil
		}
		out.Hops = append(out.Hops, res)
		chain = append(chain, res.Redirect)
		for _, seen := range chain[:len(chain)-1] {
			if SameLocation(seen, res.Redirect) {
				return Settled{}, &LoopError{Chain: chain}
			}
		}
		if len(out.Hops) > r.maxHops {
			return Settled{}, &LoopError{Chain: chain, Limit: r.maxHops}
		}
		out.Location = res.Redirect
	}
}
