package guardactor

import (
	"fmt"
	"net/url"
	"strings"
)

// Node is one node of a route tree: *Route, *GuardShell, *DiscardShell or
// *Shell. The set is closed. Nodes are plain data read once by New; New
// copies what it needs, so a tree may be reused or changed afterwards.
type Node interface{ isNode() }

// Route is a page (go_router GoRoute / GuardAwareGoRoute).
type Route struct {
	// Path is one or more segments; ":name" captures one segment as
	// parameter name. A top-level relative path gets a leading '/'; a child
	// path is relative to the nearest ancestor Route (shells contribute
	// nothing) unless it starts with '/'. "/" (or "") adds no segment.
	Path string
	// Name identifies the route in errors and Resolution.Route; unique in
	// the tree when set. Zero value: unnamed (allowed unless PathAliases is
	// set).
	Name string
	// Plain marks a plain route (Dart GoRoute): it never takes part in guard
	// evaluation as the destination, even inside a GuardShell, and its guard
	// annotations are ignored. Zero value: guard-aware.
	Plain bool
	// ShieldOf lists the guards this route resolves (the login page of an
	// auth guard). Zero value: none.
	ShieldOf []string
	// FollowUp lists the guards for which this route is where a user goes
	// once the guard passes and the current route is discarded. Zero value:
	// none.
	FollowUp []string
	// DiscardedBy lists guards that make this route and its whole subtree
	// irrelevant once they pass. Zero value: none.
	DiscardedBy []string
	// IgnoreAsContinueLocation: when this route is the destination, a
	// blocking guard never stores it as the continue location. Zero value:
	// false.
	IgnoreAsContinueLocation bool
	// Redirect is the route's own static redirect; it must be a local path
	// ("/..."). Guard redirects take precedence. Zero value: none.
	Redirect string
	// PathAliases are alternative paths that redirect to this route's
	// canonical path, keeping path parameters (by name) and the query. A
	// relative alias is a sibling of the route; an absolute alias ("/...")
	// is a top-level route. Requires Name. Zero value: none.
	PathAliases []string
	// Children are nested nodes. Zero value: none.
	Children []Node
}

// Persistence says what a GuardShell does with the destination when its
// guard blocks.
type Persistence uint8

const (
	// PersistStore (zero value) stores the destination as ?continue= on the
	// shield route (keeping an existing continue) and drops other params.
	PersistStore Persistence = iota
	// PersistIgnore goes to the shield route keeping the query as is.
	PersistIgnore
	// PersistClear goes to the shield route with the query minus continue.
	PersistClear
)

func (p Persistence) String() string {
	switch p {
	case PersistStore:
		return "store"
	case PersistIgnore:
		return "ignore"
	case PersistClear:
		return "clear"
	}
	return fmt.Sprintf("Persistence(%d)", uint8(p))
}

// GuardShell protects its subtree with a guard (Dart GuardShell<T>).
type GuardShell struct {
	Guard string // required; must be registered
	// Persistence applies when Guard blocks. Zero value: PersistStore.
	Persistence Persistence
	Children    []Node
}

// DiscardShell treats every descendant route as DiscardedBy Guard.
type DiscardShell struct {
	Guard    string // an unregistered guard is ignored
	Children []Node
}

// Shell is a plain go_router ShellRoute: transparent for paths and guards.
type Shell struct {
	Children []Node
}

func (*Route) isNode()        {}
func (*GuardShell) isNode()   {}
func (*DiscardShell) isNode() {}
func (*Shell) isNode()        {}

// seg is one compiled path segment: a literal (decoded) or a parameter.
type seg struct {
	lit   string // decoded literal, used when param == ""
	enc   string // escaped literal, used when building locations
	param string // parameter name, "" for a literal
}

type enclosing struct {
	guard int
	mode  Persistence
}

// route is a compiled Route (or a generated alias route).
type route struct {
	name      string
	label     string // name, else full path: for errors
	pattern   []seg  // full pattern from the root
	ownFrom   int    // first index of pattern this route adds (0 when absolute)
	parent    *route // nearest ancestor route
	kids      childList
	aware     bool
	ignoreCnt bool
	redirect  string
	alias     *route // canonical route when this is an alias

	shieldOf  []int // registered guard indices, deduplicated
	followUp  []int
	discarded []int // own DiscardedBy (registered)

	// precomputed from the tree path (root .. this route, shells included)
	discards     []int       // D in guard order
	enclosing    []enclosing // E outermost first, deduplicated by guard
	unregistered string      // an unregistered GuardShell guard on the path
	consults     []int       // every guard evaluation of this leaf may read
}

// childList is an ordered list of candidate routes with an optional index
// by the first own literal segment.
type childList struct {
	all   []*route
	index map[string][]*route // literal -> candidates in declaration order (wildcards merged)
	wild  []*route            // candidates whatever the segment
}

const indexThreshold = 8

func (l *childList) build(depth int) {
	if len(l.all) < indexThreshold {
		return
	}
	keyOf := func(r *route) (string, bool) {
		if r.ownFrom != depth || len(r.pattern) <= depth || r.pattern[depth].param != "" {
			return "", false
		}
		return r.pattern[depth].lit, true
	}
	l.index = make(map[string][]*route)
	for _, r := range l.all {
		if k, ok := keyOf(r); ok {
			l.index[k] = nil
		} else {
			l.wild = append(l.wild, r)
		}
	}
	for k := range l.index {
		var c []*route
		for _, r := range l.all {
			if rk, ok := keyOf(r); !ok || rk == k {
				c = append(c, r)
			}
		}
		l.index[k] = c
	}
}

func (l *childList) candidates(segs []string, depth int) []*route {
	if l.index == nil {
		return l.all
	}
	if depth < len(segs) {
		if c, ok := l.index[segs[depth]]; ok {
			return c
		}
	}
	return l.wild
}

// Router is a compiled, validated route tree with its registered guards. It
// is immutable and safe for concurrent use.
type Router struct {
	guards   []string
	guardIdx map[string]int
	top      childList
	routes   []*route
	shield   []*route // by guard index
	follow   []*route // by guard index; nil when none
	maxHops  int
}

// Option configures New.
type Option interface{ apply(*Router) }

type optionFunc func(*Router)

func (f optionFunc) apply(r *Router) { f(r) }

// WithMaxRedirects bounds the redirects Settle follows before it reports a
// *LoopError. Zero value (option not given) or n <= 0 means 32.
func WithMaxRedirects(n int) Option {
	return optionFunc(func(r *Router) {
		if n > 0 {
			r.maxHops = n
		}
	})
}

// New compiles and validates a route tree. guards is the ordered list of
// registered guard names (Dart's `guards:` list); the order decides which
// follow-up wins when several discarding guards pass. Errors are
// *ConfigError values matching the build sentinels.
func New(routes []Node, guards []string, opts ...Option) (*Router, error) {
	r := &Router{guardIdx: make(map[string]int, len(guards)), maxHops: 32}
	for _, o := range opts {
		o.apply(r)
	}
	for _, g := range guards {
		if g == "" {
			return nil, &ConfigError{Kind: ErrInvalidRoute, Detail: "empty guard name"}
		}
		if _, dup := r.guardIdx[g]; dup {
			return nil, &ConfigError{Kind: ErrInvalidRoute, Guard: g, Detail: "guard registered twice"}
		}
		r.guardIdx[g] = len(r.guards)
		r.guards = append(r.guards, g)
	}
	c := compiler{r: r, names: map[string]bool{}}
	if err := c.nodes(routes, nil, nil, &r.top, nil); err != nil {
		return nil, err
	}
	r.top.all = append(r.top.all, c.absAliases...)
	if err := c.validate(); err != nil {
		return nil, err
	}
	r.finish()
	return r, nil
}

// Guards returns the registered guard names in order (a copy).
func (r *Router) Guards() []string { return append([]string(nil), r.guards...) }

type compiler struct {
	r          *Router
	names      map[string]bool
	absAliases []*route
	discarding []bool
}

// treeCtx is the shell/route context from the root to the current node.
type treeCtx struct {
	discards     []int // registered guards discarding (DiscardShell + guard-aware DiscardedBy)
	enclosing    []enclosing
	unregistered string // first unregistered GuardShell guard on the path
}

func (c *compiler) registered(names []string) []int {
	var out []int
	for _, n := range names {
		if i, ok := c.r.guardIdx[n]; ok && !containsInt(out, i) {
			out = append(out, i)
		}
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (c *compiler) nodes(ns []Node, parent *route, tc *treeCtx, list *childList, discardShells []int) error {
	if tc == nil {
		tc = &treeCtx{}
	}
	for _, n := range ns {
		switch n := n.(type) {
		case *Route:
			if n == nil {
				return &ConfigError{Kind: ErrInvalidRoute, Detail: "nil *Route"}
			}
			if err := c.route(n, parent, tc, list, discardShells); err != nil {
				return err
			}
		case *GuardShell:
			if n == nil {
				return &ConfigError{Kind: ErrInvalidRoute, Detail: "nil *GuardShell"}
			}
			if n.Persistence > PersistClear {
				return &ConfigError{Kind: ErrInvalidRoute, Guard: n.Guard, Detail: "unknown persistence " + n.Persistence.String()}
			}
			gi, ok := c.r.guardIdx[n.Guard]
			if !ok {
				// Like Dart, reported when a destination below it is
				// evaluated (an unused subtree may name other guards).
				sub := *tc
				if sub.unregistered == "" {
					sub.unregistered = n.Guard
				}
				if err := c.nodes(n.Children, parent, &sub, list, discardShells); err != nil {
					return err
				}
				continue
			}
			sub := *tc
			dup := false
			for _, e := range tc.enclosing {
				dup = dup || e.guard == gi
			}
			if !dup {
				sub.enclosing = append(append([]enclosing(nil), tc.enclosing...), enclosing{guard: gi, mode: n.Persistence})
			}
			if err := c.nodes(n.Children, parent, &sub, list, discardShells); err != nil {
				return err
			}
		case *DiscardShell:
			if n == nil {
				return &ConfigError{Kind: ErrInvalidRoute, Detail: "nil *DiscardShell"}
			}
			sub := *tc
			ds := discardShells
			if gi, ok := c.r.guardIdx[n.Guard]; ok {
				sub.discards = appendUnique(tc.discards, gi)
				ds = appendUnique(discardShells, gi)
			}
			if err := c.nodes(n.Children, parent, &sub, list, ds); err != nil {
				return err
			}
		case *Shell:
			if n == nil {
				return &ConfigError{Kind: ErrInvalidRoute, Detail: "nil *Shell"}
			}
			if err := c.nodes(n.Children, parent, tc, list, discardShells); err != nil {
				return err
			}
		default:
			return &ConfigError{Kind: ErrInvalidRoute, Detail: fmt.Sprintf("unknown node type %T", n)}
		}
	}
	return nil
}

func appendUnique(s []int, v int) []int {
	if containsInt(s, v) {
		return s
	}
	return append(append([]int(nil), s...), v)
}

// parsePattern compiles a route path relative to base.
func parsePattern(p string, base []seg) (pattern []seg, ownFrom int, err error) {
	if strings.ContainsAny(p, "?#") {
		return nil, 0, fmt.Errorf("path %q contains '?' or '#'", p)
	}
	abs := strings.HasPrefix(p, "/")
	if abs {
		base = nil
	}
	pattern = append([]seg(nil), base...)
	ownFrom = len(base)
	seen := map[string]bool{}
	for _, s := range pattern {
		if s.param != "" {
			seen[s.param] = true
		}
	}
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		if s == "" {
			if strings.Trim(p, "/") == "" {
				break
			}
			return nil, 0, fmt.Errorf("path %q has an empty segment", p)
		}
		if strings.HasPrefix(s, ":") {
			name := s[1:]
			if name == "" {
				return nil, 0, fmt.Errorf("path %q has an unnamed parameter", p)
			}
			if seen[name] {
				return nil, 0, fmt.Errorf("path %q repeats parameter %q", p, name)
			}
			seen[name] = true
			pattern = append(pattern, seg{param: name})
			continue
		}
		lit, uerr := url.PathUnescape(s)
		if uerr != nil || lit == "." || lit == ".." || badPathBytes(lit) {
			return nil, 0, fmt.Errorf("path %q has an invalid segment %q", p, s)
		}
		pattern = append(pattern, seg{lit: lit, enc: url.PathEscape(lit)})
	}
	return pattern, ownFrom, nil
}

// badPathBytes reports control characters or '/' in a decoded segment.
func badPathBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == 0x7f || b == '/' {
			return true
		}
	}
	return false
}

func patternString(p []seg) string {
	if len(p) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range p {
		b.WriteByte('/')
		if s.param != "" {
			b.WriteByte(':')
			b.WriteString(s.param)
		} else {
			b.WriteString(s.enc)
		}
	}
	return b.String()
}

func (c *compiler) route(n *Route, parent *route, tc *treeCtx, list *childList, discardShells []int) error {
	var base []seg
	if parent != nil {
		base = parent.pattern
	}
	pattern, ownFrom, err := parsePattern(n.Path, base)
	label := n.Name
	if label == "" {
		label = patternString(pattern)
	}
	if err != nil {
		return &ConfigError{Kind: ErrInvalidRoute, Routes: []string{label}, Detail: err.Error()}
	}
	if n.Name != "" {
		if c.names[n.Name] {
			return &ConfigError{Kind: ErrInvalidRoute, Routes: []string{n.Name}, Detail: "duplicate route name"}
		}
		c.names[n.Name] = true
	}
	if n.Redirect != "" && !IsLocalPath(n.Redirect) {
		return &ConfigError{Kind: ErrInvalidRoute, Routes: []string{label}, Detail: fmt.Sprintf("redirect %q is not a local path", n.Redirect)}
	}
	if len(n.PathAliases) > 0 && n.Name == "" {
		return &ConfigError{Kind: ErrAliasRequiresName, Routes: []string{label}}
	}
	rt := &route{
		name:      n.Name,
		label:     label,
		pattern:   pattern,
		ownFrom:   ownFrom,
		parent:    parent,
		aware:     !n.Plain,
		ignoreCnt: n.IgnoreAsContinueLocation,
		redirect:  n.Redirect,
	}
	sub := *tc
	if rt.aware {
		rt.shieldOf = c.registered(n.ShieldOf)
		rt.followUp = c.registered(n.FollowUp)
		rt.discarded = c.registered(n.DiscardedBy)
		for _, g := range rt.discarded {
			sub.discards = appendUnique(sub.discards, g)
		}
		if c.discarding == nil {
			c.discarding = make([]bool, len(c.r.guards))
		}
		for _, g := range discardShells {
			c.discarding[g] = true
		}
		for _, g := range rt.discarded {
			c.discarding[g] = true
		}
	}
	// D in guard order.
	for gi := range c.r.guards {
		if containsInt(sub.discards, gi) {
			rt.discards = append(rt.discards, gi)
		}
	}
	rt.enclosing = append([]enclosing(nil), tc.enclosing...)
	rt.unregistered = tc.unregistered
	c.r.routes = append(c.r.routes, rt)
	list.all = append(list.all, rt)

	for _, a := range n.PathAliases {
		apat, aown, err := parsePattern(a, base)
		if err != nil {
			return &ConfigError{Kind: ErrInvalidRoute, Routes: []string{label}, Detail: "alias: " + err.Error()}
		}
		params := map[string]bool{}
		for _, s := range apat {
			if s.param != "" {
				params[s.param] = true
			}
		}
		for _, s := range pattern {
			if s.param != "" && !params[s.param] {
				return &ConfigError{Kind: ErrInvalidRoute, Routes: []string{label}, Detail: fmt.Sprintf("alias %q lacks parameter %q", a, s.param)}
			}
		}
		ar := &route{label: label + " (alias " + a + ")", pattern: apat, ownFrom: aown, alias: rt}
		if strings.HasPrefix(a, "/") {
			c.absAliases = append(c.absAliases, ar)
		} else {
			ar.parent = parent
			list.all = append(list.all, ar)
		}
		c.r.routes = append(c.r.routes, ar)
	}
	return c.nodes(n.Children, rt, &sub, &rt.kids, discardShells)
}

// validate runs the Dart build checks in the Dart order.
func (c *compiler) validate() error {
	r := c.r
	r.shield = make([]*route, len(r.guards))
	r.follow = make([]*route, len(r.guards))
	shields := make([][]string, len(r.guards))
	follows := make([][]string, len(r.guards))
	for _, rt := range r.routes {
		for _, g := range rt.shieldOf {
			if r.shield[g] == nil {
				r.shield[g] = rt
			}
			shields[g] = append(shields[g], rt.label)
		}
		for _, g := range rt.followUp {
			if r.follow[g] == nil {
				r.follow[g] = rt
			}
			follows[g] = append(follows[g], rt.label)
		}
	}
	for g, name := range r.guards {
		switch len(shields[g]) {
		case 0:
			return &ConfigError{Kind: ErrShieldMissing, Guard: name, Detail: "no guard-aware route has it in ShieldOf"}
		case 1:
		default:
			return &ConfigError{Kind: ErrMultipleShields, Guard: name, Routes: shields[g]}
		}
	}
	for g, name := range r.guards {
		if len(follows[g]) > 1 {
			return &ConfigError{Kind: ErrMultipleFollowUps, Guard: name, Routes: follows[g]}
		}
	}
	discarding := func(g int) bool { return c.discarding != nil && c.discarding[g] }
	for g, name := range r.guards {
		if discarding(g) && len(follows[g]) == 0 {
			return &ConfigError{Kind: ErrFollowUpMissing, Guard: name, Routes: c.discardedLabels(g), Detail: "the guard discards routes but no route has it in FollowUp"}
		}
	}
	for g, name := range r.guards {
		if len(follows[g]) == 1 && !discarding(g) {
			return &ConfigError{Kind: ErrFollowUpWithoutDiscard, Guard: name, Routes: follows[g], Detail: "no route is discarded by the guard"}
		}
	}
	return nil
}

func (c *compiler) discardedLabels(g int) []string {
	var out []string
	for _, rt := range c.r.routes {
		if containsInt(rt.discarded, g) {
			out = append(out, rt.label)
		}
	}
	return out
}

// finish builds indexes and the per-leaf list of consulted guards.
func (r *Router) finish() {
	r.top.build(0)
	for _, rt := range r.routes {
		rt.kids.build(len(rt.pattern))
		if !rt.aware {
			continue
		}
		var cs []int
		add := func(g int) {
			if !containsInt(cs, g) {
				cs = append(cs, g)
			}
		}
		for _, g := range rt.discards {
			add(g)
		}
		for _, g := range rt.shieldOf {
			add(g)
		}
		for _, e := range rt.enclosing {
			add(e.guard)
		}
		rt.consults = cs
	}
}
