package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apppigeon/pigeon/clock"
	"github.com/apppigeon/pigeon/internal/backoff"
	"github.com/apppigeon/pigeon/messages"
)

// RetryPolicy says how often and how patiently a Retry resends a request.
// The zero value is valid: 3 attempts, 100ms and 10s.
type RetryPolicy struct {
	// MaxAttempts is the number of times a request is sent at most, the
	// first time included (1: never resent). A 401 replay does not count.
	// Zero value: 3.
	MaxAttempts int
	// MinDelay is the ceiling of the first back-off; it doubles with each
	// retry up to MaxDelay. Zero value: 100ms.
	MinDelay time.Duration
	// MaxDelay caps every wait, a server's Retry-After included. Zero
	// value: 10s, or MinDelay when that is larger.
	MaxDelay time.Duration
}

// Validate returns an error describing what is wrong with p (a negative
// count or delay, MinDelay above MaxDelay), nil for a usable policy.
func (p RetryPolicy) Validate() error {
	var errs []error
	if p.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d is negative", p.MaxAttempts))
	}
	if p.MinDelay < 0 {
		errs = append(errs, fmt.Errorf("MinDelay %v is negative", p.MinDelay))
	}
	if p.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("MaxDelay %v is negative", p.MaxDelay))
	}
	if p.MaxDelay > 0 && p.MinDelay > p.MaxDelay {
		errs = append(errs, fmt.Errorf("MinDelay %v exceeds MaxDelay %v", p.MinDelay, p.MaxDelay))
	}
	return errors.Join(errs...)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 3
	}
	if p.MinDelay == 0 {
		p.MinDelay = 100 * time.Millisecond
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = max(10*time.Second, p.MinDelay)
	}
	return p
}

// RetryStats counts what a Retry did, for a metrics layer to read.
type RetryStats struct {
	// Retries is the number of requests sent again after a retryable
	// answer or transport error.
	Retries int64
	// Exhausted is the number of calls that ended on a retryable answer or
	// error because MaxAttempts was reached.
	Exhausted int64
}

// Retry is an http.RoundTripper that resends a request through Base when
// the attempt failed for a passing reason: an answer 429, 502, 503 or
// 504, or a transport error (no answer at all). Only requests that are
// safe to send twice are resent: method GET, HEAD, OPTIONS, PUT or DELETE,
// or any method with an Idempotency-Key header; and only when the body can
// be read again (none, or req.GetBody set). Any other request goes through
// Base once, untouched.
//
// Between attempts it waits with pigeon's one back-off (full jitter, as
// the refresh coordinator and sockets do), a random duration in
// [0, min(MaxDelay, MinDelay·2^n)) before the n-th retry (n from 0), or
// the server's Retry-After (seconds or an HTTP date) when the answer has
// one, capped by MaxDelay. The wait ends early when the request's context
// or Life ends: RoundTrip then returns ctx.Err() (or Life's cause).
//
// When the attempts run out, the last answer is returned as is (a 503 is
// a response, not an error); the last transport error is returned wrapped
// in an error that says how many attempts were made.
//
// Retry wraps pigeon's auth Transport: each attempt gets the then-current
// token and its own 401 → refresh → replay, which is not an attempt. Errors
// the auth layer decides (no session, refresh failed, closed, a refused
// request that cannot be replayed) are never retried.
//
// Retry is safe for concurrent use. Its fields must not change after first
// use.
type Retry struct {
	// Base sends each attempt (pigeon's auth Transport). Zero value:
	// http.DefaultTransport.
	Base http.RoundTripper
	// Policy bounds the attempts and the waits.
	Policy RetryPolicy
	// Life, when it ends, ends a wait between attempts. Zero value: never
	// ends.
	Life context.Context
	// Clock reads the time for Retry-After dates and times the waits
	// between attempts. Zero value: the real clock (with Now, if set, for
	// the dates).
	Clock clock.Clock
	// Now reads the clock for Retry-After dates, over Clock. Zero value:
	// Clock's Now.
	Now func() time.Time
	// Rand returns a random number in [0, n) for n > 0. Zero value:
	// math/rand/v2.Int64N.
	Rand func(n int64) int64
	// Wait waits d or until ctx ends, returning ctx.Err() then (tests
	// inject it; Life is then not consulted). Zero value: a timer of Clock
	// owned by the call, stopped when it returns, which ctx or Life ends
	// early.
	Wait func(ctx context.Context, d time.Duration) error

	retries   atomic.Int64
	exhausted atomic.Int64
}

var _ http.RoundTripper = (*Retry)(nil)

// Stats returns what r did so far.
func (r *Retry) Stats() RetryStats {
	return RetryStats{Retries: r.retries.Load(), Exhausted: r.exhausted.Load()}
}

func (r *Retry) base() http.RoundTripper {
	if r.Base != nil {
		return r.Base
	}
	return http.DefaultTransport
}

// Resendable reports whether req may be sent more than once: its method is
// idempotent (or it carries an Idempotency-Key) and its body, if any, can
// be read again through GetBody.
func Resendable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		if req.Header.Get("Idempotency-Key") == "" {
			return false
		}
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	p := r.Policy.withDefaults()
	if p.MaxAttempts <= 1 || !Resendable(req) {
		return r.base().RoundTrip(req)
	}
	ctx := req.Context()
	send := req
	mark := owned(req.Header) // the auth Transport below sets the bearer in req itself
	for attempt := 1; ; attempt++ {
		resp, err := r.base().RoundTrip(send)
		if !r.shouldRetry(ctx, resp, err) {
			return resp, err
		}
		if attempt >= p.MaxAttempts {
			r.exhausted.Add(1)
			if err != nil {
				return nil, fmt.Errorf("pigeon/transport: gave up after %d attempts: %w", attempt, err)
			}
			return resp, nil
		}
		next, ok := resend(req)
		if !ok {
			return resp, err
		}
		if mark {
			// The copy holds the bearer of the attempt before: it gets the
			// placeholder back, and with it the token current now.
			next.Header["Authorization"] = ownedMark
		}
		d := r.delay(p, attempt-1, resp)
		if resp != nil {
			drain(resp)
		}
		if err := r.wait(ctx, d); err != nil {
			closeBody(next)
			return nil, err
		}
		r.retries.Add(1)
		send = next
	}
}

// resend returns a copy of req with a fresh body, or false when the body
// cannot be had again.
func resend(req *http.Request) (*http.Request, bool) {
	next := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return next, true
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	next.Body = body
	return next, true
}

func (r *Retry) shouldRetry(ctx context.Context, resp *http.Response, err error) bool {
	if ctx.Err() != nil || r.Life != nil && r.Life.Err() != nil {
		return false
	}
	if err != nil {
		return retryableError(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableError reports whether err is a transport error worth another
// attempt: not a decision of pigeon's auth layer, not the caller giving
// up, not a certificate that will fail again.
func retryableError(err error) bool {
	for _, final := range []error{
		context.Canceled, context.DeadlineExceeded, ErrInsecureBearer,
		messages.ErrClosed, messages.ErrNoAuth, messages.ErrUnknownAccount, messages.ErrSessionExpired,
		messages.ErrRefreshUnavailable, messages.ErrRefreshRejected, messages.ErrLoggedOut,
		messages.ErrBodyNotReplayable, messages.ErrActorRestarted,
	} {
		if errors.Is(err, final) {
			return false
		}
	}
	var (
		replay    *ReplayError
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return !errors.As(err, &replay) && !errors.As(err, &verify) && !errors.As(err, &authority) &&
		!errors.As(err, &hostname) && !errors.As(err, &invalid)
}

// delay is the wait before retry n (0 for the first): the answer's
// Retry-After capped by MaxDelay, else full jitter.
func (r *Retry) delay(p RetryPolicy, n int, resp *http.Response) time.Duration {
	if resp != nil {
		now := r.clock().Now
		if r.Now != nil {
			now = r.Now
		}
		if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now()); ok {
			return min(d, p.MaxDelay)
		}
	}
	return backoff.New(p.MinDelay, p.MaxDelay, r.Rand).Delay(n)
}

func (r *Retry) clock() clock.Clock {
	if r.Clock != nil {
		return r.Clock
	}
	return clock.Real()
}

// ParseRetryAfter reads a Retry-After value, delay-seconds or an HTTP
// date (relative to now; a past date is 0). Empty, negative or malformed
// values give false.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return math.MaxInt64, true
			}
			return 0, false
		}
		if n > math.MaxInt64/int64(time.Second) {
			return math.MaxInt64, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

func (r *Retry) wait(ctx context.Context, d time.Duration) error {
	if r.Wait != nil {
		return r.Wait(ctx, d)
	}
	var life <-chan struct{}
	if r.Life != nil {
		life = r.Life.Done()
	}
	if d <= 0 {
		return ctx.Err()
	}
	fired := make(chan struct{})
	t := r.clock().AfterFunc(d, func() { close(fired) })
	defer t.Stop()
	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-life:
		if c := context.Cause(r.Life); c != nil && !errors.Is(c, context.Canceled) {
			return c
		}
		return messages.ErrClosed
	}
}

// drain reads a little of a response that will not be returned, so its
// connection can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
