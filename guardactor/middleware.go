package guardactor

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Middleware evaluates the route guards for each HTTP request of a
// server-side app. It is safe for concurrent use.
//
// Per request: the location is the request's escaped path plus raw query;
// only the guards the destination consults are checked, concurrently, with
// the request's context and the check timeout. A redirect becomes a 303 See
// Other to the computed location (always a local path: continue values that
// are not local paths are removed first). A guard error or timeout goes to
// the error handler (default: 503), never counts as passing. An invalid
// location (not a local path, "." or ".." segments, bad escapes) is a 400.
// A path that matches no route is passed to the next handler unguarded
// (change with WithNotFound): the route tree must cover every guarded path.
type Middleware struct {
	router   *Router
	guards   map[string]Guard
	timeout  time.Duration
	onError  func(http.ResponseWriter, *http.Request, error)
	notFound http.Handler
	neglect  func(*http.Request) bool
	logger   *zap.Logger
}

// MiddlewareOption configures NewMiddleware.
type MiddlewareOption interface{ applyMiddleware(*Middleware) }

type middlewareOptionFunc func(*Middleware)

func (f middlewareOptionFunc) applyMiddleware(m *Middleware) { f(m) }

// WithCheckTimeout bounds each guard check. Zero value (option not given)
// or d <= 0 means 5s.
func WithCheckTimeout(d time.Duration) MiddlewareOption {
	return middlewareOptionFunc(func(m *Middleware) {
		if d > 0 {
			m.timeout = d
		}
	})
}

// WithErrorHandler handles a failed guard check (err matches
// ErrGuardCheck) or an evaluation error. Zero value (option not given): the
// error is logged and the response is 503 Service Unavailable for guard
// errors, 500 for others. It is never treated as a pass.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) MiddlewareOption {
	return middlewareOptionFunc(func(m *Middleware) {
		if h != nil {
			m.onError = h
		}
	})
}

// WithNotFound serves requests whose path matches no route. Zero value
// (option not given): the next handler serves them, unguarded.
func WithNotFound(h http.Handler) MiddlewareOption {
	return middlewareOptionFunc(func(m *Middleware) { m.notFound = h })
}

// WithNeglectContinue decides per request whether a blocking guard skips
// storing the destination as continue (e.g. for a logout endpoint). Zero
// value (option not given): never.
func WithNeglectContinue(f func(*http.Request) bool) MiddlewareOption {
	return middlewareOptionFunc(func(m *Middleware) { m.neglect = f })
}

// WithMiddlewareLogger sets the logger for guard errors. Zero value
// (option not given): zap.NewNop().
func WithMiddlewareLogger(l *zap.Logger) MiddlewareOption {
	return middlewareOptionFunc(func(m *Middleware) {
		if l != nil {
			m.logger = l
		}
	})
}

// NewMiddleware returns a middleware for router. guards must hold exactly
// one Guard per registered guard name.
func NewMiddleware(router *Router, guards []Guard, opts ...MiddlewareOption) (*Middleware, error) {
	if router == nil {
		return nil, errors.New("pigeon/guardactor: NewMiddleware: nil router")
	}
	m := &Middleware{router: router, guards: make(map[string]Guard, len(guards)), timeout: 5 * time.Second, logger: zap.NewNop()}
	for _, g := range guards {
		if g == nil {
			return nil, errors.New("pigeon/guardactor: NewMiddleware: nil guard")
		}
		if _, ok := router.guardIdx[g.Name()]; !ok {
			return nil, &ConfigError{Kind: ErrGuardNotRegistered, Guard: g.Name(), Detail: "guard implementation for an unregistered guard"}
		}
		if _, dup := m.guards[g.Name()]; dup {
			return nil, fmt.Errorf("pigeon/guardactor: NewMiddleware: guard %q given twice", g.Name())
		}
		m.guards[g.Name()] = g
	}
	for _, name := range router.guards {
		if _, ok := m.guards[name]; !ok {
			return nil, fmt.Errorf("pigeon/guardactor: NewMiddleware: no Guard implementation for registered guard %q", name)
		}
	}
	for _, o := range opts {
		o.applyMiddleware(m)
	}
	if m.onError == nil {
		m.onError = m.defaultError
	}
	return m, nil
}

func (m *Middleware) defaultError(w http.ResponseWriter, r *http.Request, err error) {
	m.logger.Warn("pigeon/guardactor: guard evaluation failed", zap.String("path", r.URL.Path), zap.Error(err))
	if errors.Is(err, ErrGuardCheck) {
		http.Error(w, "guard check failed", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, "guard evaluation failed", http.StatusInternalServerError)
}

// Wrap returns a handler that evaluates the guards before calling next.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		location := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			location += "?" + r.URL.RawQuery
		}
		var buf [maxInlineSegs]string
		l, err := parseLoc(location, buf[:])
		if err != nil {
			http.Error(w, "invalid location", http.StatusBadRequest)
			return
		}
		leaf := m.router.match(&l)
		if leaf == nil {
			if m.notFound != nil {
				m.notFound.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		var snap Snapshot
		if len(leaf.consults) > 0 {
			gs := make([]Guard, len(leaf.consults))
			for i, g := range leaf.consults {
				gs[i] = m.guards[m.router.guards[g]]
			}
			snap, err = CheckGuards(r.Context(), gs, m.timeout)
			if err != nil {
				m.onError(w, r, err)
				return
			}
		}
		var cfg evalConfig
		if m.neglect != nil {
			cfg.neglectContinue = m.neglect(r)
		}
		res, err := m.router.evaluate(location, snapStates(m.router, snap), cfg)
		if err != nil {
			m.onError(w, r, err)
			return
		}
		if res.Redirect != "" {
			// res.Redirect is a local path (checked by evaluate); set as is.
			w.Header().Set("Location", res.Redirect)
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}
