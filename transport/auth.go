package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/apppigeon/pigeon/internal/obs"
	"github.com/apppigeon/pigeon/messages"
)

// TokenSource gives the Transport the token to send and handles a refused
// one. actors.TokenClient implements it. Implementations must be safe for
// concurrent use.
type TokenSource interface {
	// Token returns the snapshot to send a request with; nil means no
	// account (the request goes out without a bearer).
	Token(ctx context.Context) (*messages.TokenSnapshot, error)
	// Unauthorized reports that a request sent with s was refused and
	// returns the token to replay it with.
	Unauthorized(ctx context.Context, s *messages.TokenSnapshot) (*messages.TokenSnapshot, error)
}

// ErrInsecureBearer is returned when a bearer token would be sent over
// plain http (or ws) to a host that is not loopback (see
// BearerPolicy.AllowInsecure).
var ErrInsecureBearer = errors.New("pigeon/transport: refusing to send a bearer token over plain http or ws to a non-loopback host (use https/wss, or allow it with pigeon.WithInsecureHTTP)")

// ReplayError is returned when a request was refused and cannot be
// replayed: no new token could be had (Err is why: the session ended, the
// refresh failed) or its body cannot be read again
// (messages.ErrBodyNotReplayable). Response is the refusal, with its body
// buffered (readable, already detached from the connection).
type ReplayError struct {
	Err      error
	Response *http.Response
}

func (e *ReplayError) Error() string {
	return fmt.Sprintf("pigeon/transport: %v (server answered %s)", e.Err, e.Response.Status)
}

func (e *ReplayError) Unwrap() error { return e.Err }

// Transport is an http.RoundTripper that authenticates requests with the
// current account's token. When ShouldRefresh says a response refused the
// token, it asks Tokens for a new one (one refresh for all concurrent
// callers: that is the coordinator's job), then replays the request once
// through Base with the new token. A replay is never refreshed again: a
// second refusal is returned to the caller as is. Transport errors (no
// response) are never replayed.
//
// A request that already carries an Authorization header is passed through
// untouched. The bearer is attached only to the hosts the Transport trusts
// and never to a redirect that leaves the original host.
//
// Transport is safe for concurrent use. Its fields must not change after
// first use.
type Transport struct {
	// Base sends the requests (user middleware and the network). Zero
	// value: http.DefaultTransport.
	Base http.RoundTripper
	// Tokens is required.
	Tokens TokenSource
	// ShouldRefresh says whether a response refused the token. Zero value:
	// StatusCode == 401.
	ShouldRefresh func(*http.Response) bool
	// Headers returns default headers set on every request that does not
	// set them itself. Zero value: none.
	Headers func() http.Header
	// Hosts are the hosts ("host" or "host:port", case-insensitive) the
	// bearer may be sent to. Zero value: any host a request starts at (a
	// redirect to another host never gets it).
	Hosts []string
	// AllowInsecure allows a bearer over plain http to non-loopback hosts.
	// Zero value: refused with ErrInsecureBearer.
	AllowInsecure bool
	// Life, when it ends, makes new requests fail with Err and cancels
	// requests in flight. Zero value: never ends.
	Life context.Context
	// Scope is a second lifetime with the same effect (a narrower one:
	// an account view's, inside the client's Life). Zero value: none.
	Scope context.Context
	// Err is the error for requests after Done. Zero value: messages.ErrClosed.
	Err error
	// MaxRefusalBody bounds how much of a refused response's body is kept
	// for the caller. Zero value: 1 MiB.
	MaxRefusalBody int64
}

var _ http.RoundTripper = (*Transport)(nil)

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func (t *Transport) closedErr() error {
	if t.Err != nil {
		return t.Err
	}
	return messages.ErrClosed
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Life == nil && t.Scope == nil {
		return t.roundTrip(req.Context(), req)
	}
	ended := func() bool { return over(t.Life) || over(t.Scope) }
	closed := t.closedErr()
	if ended() {
		closeBody(req)
		return nil, closed
	}
	if life := t.onlyLife(); life != nil && (req.Context().Done() == nil || boundTo(req.Context(), life)) {
		// The request ends exactly when the one lifetime does: its
		// context never ends (Bind gives it the lifetime's end) or was
		// made by Bind. No cancellation of its own to set up and release.
		resp, err := t.roundTrip(t.Bind(req.Context()), req)
		if err != nil && ended() {
			return nil, fmt.Errorf("%w (%v)", closed, err)
		}
		return resp, err
	}
	// One cancellation for the request, fired by either lifetime, undone
	// when the response body is closed.
	ctx, cancel := context.WithCancelCause(req.Context())
	end := func() { cancel(closed) }
	var stops [2]func() bool
	for i, life := range [2]context.Context{t.Life, t.Scope} {
		if life != nil {
			stops[i] = context.AfterFunc(life, end)
		}
	}
	release := func() {
		for _, stop := range stops {
			if stop != nil {
				stop()
			}
		}
		cancel(nil)
	}
	resp, err := t.roundTrip(ctx, req)
	if err != nil {
		closedNow := ended() && req.Context().Err() == nil
		release()
		if closedNow {
			return nil, fmt.Errorf("%w (%v)", closed, err)
		}
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// over reports whether ctx (nil: never) has ended, without the lock
// ctx.Err takes.
func over(ctx context.Context) bool {
	if ctx == nil {
		return false
	}
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// onlyLife returns the lifetime when exactly one of Life and Scope is
// set, nil otherwise.
func (t *Transport) onlyLife() context.Context {
	switch {
	case t.Scope == nil:
		return t.Life
	case t.Life == nil:
		return t.Scope
	}
	return nil
}

// lifeContext is a request's context when the caller's never ends: the
// caller's values, and life's end (Done, Err, and through life's own
// cancellation record, Cause and the children net/http derives from it,
// which attach to life without a goroutine).
type lifeContext struct {
	context.Context // the caller's: its values
	life            context.Context
}

func (c lifeContext) Deadline() (time.Time, bool) { return c.life.Deadline() }
func (c lifeContext) Done() <-chan struct{}       { return c.life.Done() }
func (c lifeContext) Err() error                  { return c.life.Err() }

// Value looks in the caller's context first, then in life, where
// context's own cancellation key leads to life's record.
func (c lifeContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.life.Value(key)
}

// Bind returns the context to build a request for this Transport with:
// ctx itself, or when ctx never ends (it has no Done channel), one with
// ctx's values that ends when the Transport's lifetime does. A request
// built with it costs RoundTrip no cancellation of its own to set up and
// release. pigeon's verbs build their requests with it.
func (t *Transport) Bind(ctx context.Context) context.Context {
	life := t.onlyLife()
	if life == nil || ctx.Done() != nil {
		return ctx
	}
	return endingWith(ctx, lifeShard(life))
}

// BindOnce is Bind for a lifetime that serves few requests (an account
// view made for one request): the context it returns ends with the
// lifetime itself, and no shards are made for the lifetime. Concurrent
// requests bound this way share the lifetime's lock (net/http registers
// each request's cancellation with it), so a lifetime that goes on to
// serve many should move to Bind.
func (t *Transport) BindOnce(ctx context.Context) context.Context {
	life := t.onlyLife()
	if life == nil || ctx.Done() != nil {
		return ctx
	}
	return endingWith(ctx, life)
}

// endingWith is ctx, which never ends, with end's end: end itself when
// ctx holds nothing (Background), else ctx's values over end.
func endingWith(ctx, end context.Context) context.Context {
	if ctx == context.Background() {
		return end
	}
	return lifeContext{Context: ctx, life: end}
}

// ownedMark is the placeholder Owned puts in a request's Authorization
// header. Its bytes are not a valid header value, so a request that
// reached the network with it unreplaced would fail rather than send it.
var ownedMark = []string{"\x00pigeon-owned"}

// Owned marks req, which its maker built for this one call and will not
// reuse or read again, as one whose header map the Transport may change
// in place: the Transport sets the bearer in it instead of copying the
// map (a copy costs two allocations and a tenth of the client's CPU per
// request). It puts a placeholder in req's Authorization header; the
// Transport replaces or removes it before the request goes further, and
// a caller who sets Authorization after Owned sends its own. Send req
// through a client whose chain has a Transport (pigeon's verbs do): any
// other client refuses the placeholder as an invalid header value.
// Default headers the Transport adds stay in the map, so a Retry layer
// above sends them again on its later attempts.
func Owned(req *http.Request) {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header["Authorization"] = ownedMark
}

// placeholder reports whether h's Authorization is Owned's placeholder
// (mine) and whether it is the placeholder itself (owned) rather than a
// copy (http.Client copies a request's header for a redirect).
func placeholder(h http.Header) (mine, owned bool) {
	v := h["Authorization"]
	if len(v) != 1 || v[0] != ownedMark[0] {
		return false, false
	}
	return true, &v[0] == &ownedMark[0]
}

// owned reports whether h holds Owned's placeholder itself.
func owned(h http.Header) bool {
	_, o := placeholder(h)
	return o
}

func (t *Transport) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	mine, own := placeholder(req.Header)
	if !mine && req.Header.Get("Authorization") != "" {
		out := req.WithContext(ctx)
		t.setDefaults(out, false)
		return t.base().RoundTrip(out)
	}
	attach := t.mayAttach(req)
	var snap *messages.TokenSnapshot
	observed := obs.FromContext(ctx) // nil without telemetry
	if attach {
		w := observed.StartWait()
		s, err := t.Tokens.Token(ctx)
		if s != nil || err != nil { // nil, nil: no account, nothing waited for
			w.Token(ctx)
		}
		if err != nil {
			closeBody(req)
			return nil, err
		}
		snap = s
	}
	if snap != nil {
		if err := t.policy().Secure(req.URL); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	var out *http.Request
	switch {
	case own && ctx == req.Context():
		out = req // Owned: its header map is this call's
	case own:
		out = req.WithContext(ctx) // the same map, still this call's
	default:
		out = withHeaderCopy(ctx, req)
	}
	if mine {
		delete(out.Header, "Authorization")
	}
	t.setDefaults(out, true)
	if snap != nil {
		out.Header["Authorization"] = snap.Authorization()
	}
	resp, err := t.base().RoundTrip(out)
	if err != nil || snap == nil || !t.shouldRefresh(resp) {
		return resp, err
	}
	refusal := bufferResponse(resp, t.MaxRefusalBody)
	w := observed.StartRefusalWait()
	next, err := t.Tokens.Unauthorized(ctx, snap)
	w.Unauthorized(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ReplayError{Err: err, Response: refusal}
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return nil, &ReplayError{Err: messages.ErrBodyNotReplayable, Response: refusal}
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	var replay *http.Request
	if own && !hasBody {
		// Owned and bodiless: the request just sent is this call's, its
		// defaults are set, and the refusal's body is closed (after which
		// net/http lets a request be sent again), so it goes once more
		// with the new token instead of a deep copy.
		replay = out
	} else {
		replay = req.Clone(ctx)
		if req.GetBody != nil && hasBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, &ReplayError{Err: fmt.Errorf("%w: GetBody: %w", messages.ErrBodyNotReplayable, err), Response: refusal}
			}
			replay.Body = body
		}
		t.setDefaults(replay, true)
	}
	replay.Header["Authorization"] = next.Authorization()
	observed.Replayed(ctx)
	return t.base().RoundTrip(replay)
}

// withHeaderCopy returns a shallow copy of req with ctx and a header map
// of its own, in which keys can be set without touching req's. The value
// slices are req's: the layers below read them, and a RoundTripper must
// not modify them (Request.Clone's deep copy of the URL, of every value
// and of the trailers is not needed to add the bearer, and costs
// allocations on every request).
func withHeaderCopy(ctx context.Context, req *http.Request) *http.Request {
	out := req.WithContext(ctx)
	if req.Header == nil {
		out.Header = http.Header{}
	} else {
		out.Header = maps.Clone(req.Header)
	}
	return out
}

func (t *Transport) shouldRefresh(resp *http.Response) bool {
	if t.ShouldRefresh != nil {
		return t.ShouldRefresh(resp)
	}
	return resp.StatusCode == http.StatusUnauthorized
}

// setDefaults applies the default headers that the request does not set.
// cloned says whether out.Header is already a private copy.
func (t *Transport) setDefaults(out *http.Request, cloned bool) {
	if t.Headers == nil {
		return
	}
	h := t.Headers()
	if len(h) == 0 {
		return
	}
	if !cloned {
		out.Header = out.Header.Clone()
		if out.Header == nil {
			out.Header = http.Header{}
		}
	}
	for k, vs := range h {
		if _, ok := out.Header[k]; !ok {
			out.Header[k] = append([]string(nil), vs...)
		}
	}
}

// mayAttach reports whether the bearer may go with req: never to a
// redirect that left the host the request chain started at, and only to
// trusted hosts when Hosts is set.
func (t *Transport) mayAttach(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	if first != req && !strings.EqualFold(first.URL.Host, req.URL.Host) {
		return false
	}
	return t.policy().Trusts(req.URL)
}

func (t *Transport) policy() BearerPolicy {
	return BearerPolicy{Hosts: t.Hosts, AllowInsecure: t.AllowInsecure}
}

// BearerPolicy is the rule deciding where a bearer token may go; the
// Transport applies it to every request and pigeon's sockets to their
// connect URL. The zero value trusts every host and refuses plain http and
// ws to hosts other than loopback. Safe for concurrent use.
type BearerPolicy struct {
	// Hosts are the hosts ("host" or "host:port", case-insensitive) the
	// bearer may be sent to. Zero value: any host.
	Hosts []string
	// AllowInsecure allows a bearer over plain http or ws to non-loopback
	// hosts. Zero value: refused with ErrInsecureBearer.
	AllowInsecure bool
}

// Trusts reports whether u's host may receive the bearer.
func (p BearerPolicy) Trusts(u *url.URL) bool {
	if len(p.Hosts) == 0 {
		return true
	}
	for _, h := range p.Hosts {
		if strings.EqualFold(h, u.Host) || strings.EqualFold(h, u.Hostname()) {
			return true
		}
	}
	return false
}

// Secure returns an error wrapping ErrInsecureBearer when a bearer sent to
// u would travel in the clear (http or ws to a non-loopback host) and
// AllowInsecure is false; nil otherwise.
func (p BearerPolicy) Secure(u *url.URL) error {
	if p.AllowInsecure || u.Scheme != "http" && u.Scheme != "ws" || IsLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInsecureBearer, u.Host)
}

// IsLoopback reports whether host names the local machine (localhost or a
// loopback IP).
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// bufferResponse reads (up to max) and closes resp's body, returning resp
// with the buffered body, so the connection is reused and the caller can
// still read what the server said.
func bufferResponse(resp *http.Response, max int64) *http.Response {
	if max <= 0 {
		max = 1 << 20
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, max))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// releaseBody runs release once when the body is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
	once    sync.Once
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
