package guardactor

import (
	"errors"
	"fmt"
	"strings"
)

// Build-time sentinel errors. New returns a *ConfigError that matches one of
// them with errors.Is; the error text names the guard and the route(s).
var (
	// ErrShieldMissing: a registered guard has no guard-aware route whose
	// ShieldOf names it (Dart: ShieldRouteMissing).
	ErrShieldMissing = errors.New("pigeon/guardactor: shield route missing")
	// ErrMultipleShields: more than one guard-aware route is the shield of a
	// guard (Dart: MultipleShieldRoute).
	ErrMultipleShields = errors.New("pigeon/guardactor: multiple shield routes")
	// ErrFollowUpMissing: a guard discards routes but no route is its
	// follow-up (Dart: FollowUpRouteMissing).
	ErrFollowUpMissing = errors.New("pigeon/guardactor: follow-up route missing")
	// ErrFollowUpWithoutDiscard: a guard has a follow-up route but discards
	// nothing (Dart: MissingDiscardingRouteForFollowUp).
	ErrFollowUpWithoutDiscard = errors.New("pigeon/guardactor: follow-up route without a discarding route")
	// ErrMultipleFollowUps: more than one route is the follow-up of a guard
	// (Dart: MultipleFollowUpRoute).
	ErrMultipleFollowUps = errors.New("pigeon/guardactor: multiple follow-up routes")
	// ErrGuardNotRegistered: a GuardShell names a guard that is not in the
	// registered guard list. Like Dart, Evaluate reports it (as a
	// *ConfigError) for a destination below that shell; New does not, since
	// a subtree nobody navigates to may name guards of another app.
	ErrGuardNotRegistered = errors.New("pigeon/guardactor: guard not registered")
	// ErrAliasRequiresName: a route with PathAliases has no Name (Dart:
	// AliasRequiresName).
	ErrAliasRequiresName = errors.New("pigeon/guardactor: path aliases require a route name")
	// ErrInvalidRoute: a route definition is malformed (bad path, duplicate
	// name, non-local explicit redirect, alias parameters that the canonical
	// path cannot use, nil node, duplicate or empty guard name).
	ErrInvalidRoute = errors.New("pigeon/guardactor: invalid route")
)

// Evaluation sentinel errors.
var (
	// ErrInvalidLocation: the location is not a local absolute path
	// ("/..."; not "//" nor "/\"), contains control characters, empty, "."
	// or ".." segments, or a malformed percent-escape.
	ErrInvalidLocation = errors.New("pigeon/guardactor: invalid location")
	// ErrGuardState: the state of a guard the evaluation needs is unknown
	// (missing from the Snapshot) or its check failed. A guard without a
	// known good state never counts as passing.
	ErrGuardState = errors.New("pigeon/guardactor: guard state unavailable")
	// ErrGuardCheck: a Guard's Check returned an error, panicked or timed out.
	ErrGuardCheck = errors.New("pigeon/guardactor: guard check failed")
	// ErrMissingParam: a redirect target needs a path parameter that the
	// current location does not provide.
	ErrMissingParam = errors.New("pigeon/guardactor: missing path parameter")
	// ErrRedirectLoop: Settle met a location twice, or exceeded the
	// redirect limit. The *LoopError shows the cycle.
	ErrRedirectLoop = errors.New("pigeon/guardactor: redirect loop")
	// ErrUnsafeRedirect: a computed redirect is not a local path. It cannot
	// happen with validated trees and locations; it is a last safety net.
	ErrUnsafeRedirect = errors.New("pigeon/guardactor: computed redirect is not a local path")
)

// ConfigError is a build-time validation error. It matches its Kind
// sentinel with errors.Is.
type ConfigError struct {
	Kind   error    // one of the Err* build sentinels
	Guard  string   // the guard concerned, "" if none
	Routes []string // the routes concerned (names, or paths for unnamed routes)
	Detail string   // extra explanation, may be ""
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Guard != "" {
		fmt.Fprintf(&b, ": guard %q", e.Guard)
	}
	if len(e.Routes) > 0 {
		b.WriteString(": route")
		if len(e.Routes) > 1 {
			b.WriteString("s")
		}
		for i, r := range e.Routes {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %q", r)
		}
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *ConfigError) Unwrap() error { return e.Kind }

// LocationError reports an invalid location. It matches ErrInvalidLocation.
type LocationError struct {
	Location string
	Reason   string
}

func (e *LocationError) Error() string {
	return fmt.Sprintf("pigeon/guardactor: invalid location %q: %s", e.Location, e.Reason)
}

// Unwrap returns ErrInvalidLocation.
func (e *LocationError) Unwrap() error { return ErrInvalidLocation }

// GuardError reports a guard whose state is unavailable or whose check
// failed. It matches its Kind (ErrGuardState or ErrGuardCheck) and, through
// Err, the cause.
type GuardError struct {
	Guard string
	Kind  error // ErrGuardState or ErrGuardCheck
	Err   error // the cause, may be nil
}

func (e *GuardError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: guard %q: %v", e.Kind, e.Guard, e.Err)
	}
	return fmt.Sprintf("%v: guard %q", e.Kind, e.Guard)
}

// Unwrap returns Kind and Err.
func (e *GuardError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ParamError reports a redirect target whose path parameter is not
// provided by the current location. It matches ErrMissingParam.
type ParamError struct {
	Route string // the target route
	Param string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("pigeon/guardactor: missing path parameter %q for route %q", e.Param, e.Route)
}

// Unwrap returns ErrMissingParam.
func (e *ParamError) Unwrap() error { return ErrMissingParam }

// LoopError reports a redirect cycle found by Settle. It matches
// ErrRedirectLoop.
type LoopError struct {
	// Chain is every location visited, in order; when a cycle was found the
	// last entry equals an earlier one.
	Chain []string
	// Limit is non-zero when the redirect limit was exceeded without a
	// repeated location.
	Limit int
}

func (e *LoopError) Error() string {
	if e.Limit > 0 {
		return fmt.Sprintf("pigeon/guardactor: redirect loop: more than %d redirects: %s", e.Limit, strings.Join(e.Chain, " -> "))
	}
	return "pigeon/guardactor: redirect loop: " + strings.Join(e.Chain, " -> ")
}

// Unwrap returns ErrRedirectLoop.
func (e *LoopError) Unwrap() error { return ErrRedirectLoop }
