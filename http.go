package pigeon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apppigeon/pigeon/internal/obs"
	"github.com/apppigeon/pigeon/transport"
)

// httpCore is the HTTP half shared by both clients: URL resolution, body
// encoding, reading and status errors.
type httpCore struct {
	client  *http.Client
	baseURL *url.URL
	maxBody int64
	life    context.Context
	// refusedCause, when set, says why a 401 to a request made with ctx
	// was beyond pigeon's control (ErrNoAuth: no account was signed in);
	// nil otherwise.
	refusedCause func(ctx context.Context) error
	// bind is the auth Transport's Bind: the context to build a request
	// with (nil: the caller's).
	bind func(ctx context.Context) context.Context
}

// acceptJSON is the Accept header of every request the verbs build, one
// slice shared by all (an http.Header's values are not modified in place;
// Header.Add appends to a copy).
var acceptJSON = []string{"application/json"}

func (h *httpCore) resolve(path string) (*url.URL, error) {
	u, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("pigeon: bad path %q: %w", path, err)
	}
	if u.IsAbs() {
		return u, nil
	}
	if h.baseURL == nil {
		return nil, fmt.Errorf("pigeon: relative path %q needs WithBaseURL", path)
	}
	base := *h.baseURL
	if !strings.HasSuffix(base.Path, "/") && !strings.HasPrefix(path, "/") {
		base.Path += "/"
	}
	if strings.HasPrefix(path, "/") && base.Path != "" && base.Path != "/" {
		// "/me" under "https://host/api/v1" means "https://host/api/v1/me".
		u.Path = strings.TrimSuffix(base.Path, "/") + u.Path
		if u.RawPath != "" {
			u.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + u.RawPath
		}
	}
	return base.ResolveReference(u), nil
}

// quickResolve is resolve for the common case, a plain absolute path
// ("/users/42") under WithBaseURL: the URL string is the base's scheme,
// host and path joined with it, with no parsing. It reports false for
// anything else (a query, a fragment, an escape, a dot segment, a path
// not starting with "/", a base with user info or escapes), which
// resolve handles; both give the same URL.
func (h *httpCore) quickResolve(path string) (string, bool) {
	b := h.baseURL
	if b == nil || b.User != nil || b.RawPath != "" || len(path) == 0 || path[0] != '/' ||
		len(path) > 1 && path[1] == '/' || strings.Contains(path, "/.") || strings.Contains(b.Path, "/.") {
		return "", false
	}
	if !plainPath(path) || !plainPath(b.Path) {
		return "", false
	}
	base := strings.TrimSuffix(b.Path, "/")
	return b.Scheme + "://" + b.Host + base + path, true
}

func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if !plainPathByte(p[i]) {
			return false
		}
	}
	return true
}

// plainPathByte reports whether c stands for itself in a URL path: an
// unreserved character, "/" or a sub-delimiter that is never escaped.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '/', '$', '&', '+', ',', ':', ';', '=', '@':
		return true
	}
	return false
}

// encodeBody returns a replayable body for v: nil (none), []byte, string,
// json.RawMessage, url.Values (form), io.Reader (buffered unless it is a
// *bytes.Reader, *bytes.Buffer or *strings.Reader), or anything else as
// JSON.
func encodeBody(v any) (io.Reader, string, error) {
	switch b := v.(type) {
	case nil:
		return nil, "", nil
	case []byte:
		return bytes.NewReader(b), "application/octet-stream", nil
	case json.RawMessage:
		return bytes.NewReader(b), "application/json", nil
	case string:
		return strings.NewReader(b), "text/plain; charset=utf-8", nil
	case url.Values:
		return strings.NewReader(b.Encode()), "application/x-www-form-urlencoded", nil
	case *bytes.Reader, *bytes.Buffer, *strings.Reader:
		return b.(io.Reader), "application/octet-stream", nil
	case io.Reader:
		data, err := io.ReadAll(b)
		if err != nil {
			return nil, "", fmt.Errorf("pigeon: reading request body: %w", err)
		}
		return bytes.NewReader(data), "application/octet-stream", nil
	default:
		data, err := json.Marshal(v)
		if err != nil {
			return nil, "", fmt.Errorf("pigeon: encoding request body: %w", err)
		}
		return bytes.NewReader(data), "application/json", nil
	}
}

// budgetError is the cause of a call that ran out of its WithTimeout
// budget; it matches context.DeadlineExceeded.
type budgetError struct{ d time.Duration }

func (e *budgetError) Error() string {
	return fmt.Sprintf("pigeon: request exceeded its WithTimeout budget of %v", e.d)
}

func (e *budgetError) Unwrap() error { return context.DeadlineExceeded }

// requestBudget returns the WithTimeout among opts (the last one wins; 0
// when none).
func requestBudget(opts []RequestOption) (time.Duration, error) {
	var d time.Duration
	for _, o := range opts {
		if t, ok := o.(timeoutOption); ok {
			if t <= 0 {
				return 0, fmt.Errorf("pigeon: WithTimeout: %v is not positive", time.Duration(t))
			}
			d = time.Duration(t)
		}
	}
	return d, nil
}

// do sends one request of a verb within its WithTimeout budget, if any:
// the budget covers the token and refresh waits, every retry and the body
// read.
func (h *httpCore) do(ctx context.Context, method, path string, body any, opts []RequestOption) (*Response, error) {
	d, err := requestBudget(opts)
	if err != nil {
		return nil, err
	}
	if d == 0 {
		return h.send(ctx, method, path, body, opts)
	}
	budget := &budgetError{d: d}
	bctx, cancel := context.WithTimeoutCause(ctx, d, budget)
	defer cancel()
	r, err := h.send(bctx, method, path, body, opts)
	if err != nil && ctx.Err() == nil && context.Cause(bctx) == error(budget) && errors.Is(err, context.DeadlineExceeded) {
		return r, fmt.Errorf("%w (%v)", budget, err)
	}
	return r, err
}

func (h *httpCore) send(ctx context.Context, method, path string, body any, opts []RequestOption) (*Response, error) {
	select { // h.life.Err() would take its lock on every request
	case <-h.life.Done():
		return nil, ErrClosed
	default:
	}
	target, ok := h.quickResolve(path)
	if !ok {
		u, err := h.resolve(path)
		if err != nil {
			return nil, err
		}
		target = u.String()
	}
	rd, ctype, err := encodeBody(body)
	if err != nil {
		return nil, err
	}
	rctx := ctx
	if h.bind != nil {
		rctx = h.bind(ctx)
	}
	req, err := http.NewRequestWithContext(rctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("pigeon: building request: %w", err)
	}
	// The request is this call's alone: the auth Transport may set the
	// bearer in its header map instead of copying the map.
	transport.Owned(req)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header["Accept"] = acceptJSON
	for _, o := range opts {
		if o != nil {
			o.applyRequest(req)
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.convertErr(ctx, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp.Body, resp.ContentLength, h.maxBody)
	if err != nil {
		var tooLarge *bodyTooLargeError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, h.convertErr(ctx, fmt.Errorf("pigeon: reading response: %w", err))
	}
	r := &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data}
	if r.StatusCode >= 400 {
		se := newStatusError(req, r)
		if r.StatusCode == http.StatusUnauthorized && h.refusedCause != nil {
			se.Err = h.refusedCause(ctx)
		}
		return r, se
	}
	return r, nil
}

// convertErr gives the facade's error for a failed request: ctx's own error
// when the caller gave up, ErrClosed when the client was closed, and a
// refused, non-replayable request as ErrBodyNotReplayable wrapping its
// *StatusError.
func (h *httpCore) convertErr(ctx context.Context, err error) error {
	var re *transport.ReplayError
	if errors.As(err, &re) {
		r := readResponse(re.Response)
		return fmt.Errorf("pigeon: %w: %w", re.Err, newStatusError(re.Response.Request, r))
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if h.life.Err() != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	return err
}

func readResponse(resp *http.Response) *Response {
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: b}
}

// baseTransport returns the network transport pigeon builds on and whether
// pigeon owns it (and must close its idle connections).
func baseTransport(c *config) (http.RoundTripper, bool) {
	if c.httpClient != nil && c.httpClient.Transport != nil {
		return c.httpClient.Transport, false
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	t.MaxIdleConns = 512
	return t, true
}

func withMiddleware(base http.RoundTripper, mws []func(http.RoundTripper) http.RoundTripper) http.RoundTripper {
	for i := len(mws) - 1; i >= 0; i-- {
		base = mws[i](base)
	}
	return base
}

// buildHTTP builds a client's HTTP chain, the same for AuthorizedPigeon
// and GhostPigeon: plain (the base transport under WithMiddleware) → the
// auth Transport with tokens → WithRetry's layer → the *http.Client, and
// the httpCore of the verbs over it. It returns the auth Transport too
// (Accounts copy it).
func buildHTTP(c *config, life context.Context, plain http.RoundTripper, tokens transport.TokenSource,
	shouldRefresh func(*http.Response) bool, headers func() http.Header) (*transport.Transport, *httpCore) {
	rt := &transport.Transport{
		Base:          plain,
		Tokens:        tokens,
		ShouldRefresh: shouldRefresh,
		Headers:       headers,
		Hosts:         authHosts(c),
		AllowInsecure: c.allowInsecure,
		Life:          life,
	}
	return rt, &httpCore{client: newClient(c, withRetry(c, life, rt)), baseURL: c.baseURL, maxBody: c.maxBody, life: life, bind: rt.Bind}
}

// withRetry puts WithRetry's layer around rt (the auth Transport), or
// returns rt when the option is absent. Its waits and Retry-After dates
// follow WithClock.
func withRetry(c *config, life context.Context, rt http.RoundTripper) http.RoundTripper {
	if c.retry == nil {
		return rt
	}
	if c.obs != nil {
		rt = obs.Attempts{Base: rt}
	}
	return &transport.Retry{Base: rt, Policy: *c.retry, Life: life, Clock: c.clock}
}

// newClient returns the http.Client over rt, with the telemetry layer
// outermost when WithTracerProvider or WithMeterProvider is set.
func newClient(c *config, rt http.RoundTripper) *http.Client {
	if c.obs != nil {
		rt = &obs.Transport{Base: rt, Obs: c.obs}
	}
	hc := &http.Client{Transport: rt}
	if c.httpClient != nil {
		hc.Timeout = c.httpClient.Timeout
		hc.Jar = c.httpClient.Jar
		hc.CheckRedirect = c.httpClient.CheckRedirect
	}
	return hc
}

func authHosts(c *config) []string {
	if c.baseURL == nil && len(c.authHosts) == 0 {
		return nil
	}
	hosts := append([]string(nil), c.authHosts...)
	if c.baseURL != nil {
		hosts = append(hosts, c.baseURL.Host)
	}
	return hosts
}

// verbs are a client's HTTP verbs over its httpCore: relative paths
// resolve against WithBaseURL, bodies are encoded as Post says, statuses
// of 400 and above come back as a *StatusError with the Response.
type verbs struct{ core *httpCore }

// Get sends a GET to path (resolved against WithBaseURL).
func (v verbs) Get(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return v.core.do(ctx, http.MethodGet, path, nil, opts)
}

// Post sends body (JSON unless []byte, string, url.Values or io.Reader).
func (v verbs) Post(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return v.core.do(ctx, http.MethodPost, path, body, opts)
}

// Put sends body like Post.
func (v verbs) Put(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return v.core.do(ctx, http.MethodPut, path, body, opts)
}

// Patch sends body like Post.
func (v verbs) Patch(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return v.core.do(ctx, http.MethodPatch, path, body, opts)
}

// Delete sends a DELETE.
func (v verbs) Delete(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return v.core.do(ctx, http.MethodDelete, path, nil, opts)
}

// GetJSON performs a GET with p and decodes the JSON answer into a T.
func GetJSON[T any](ctx context.Context, p AppPigeon, path string, opts ...RequestOption) (T, error) {
	var v T
	r, err := p.Get(ctx, path, opts...)
	if err != nil {
		return v, err
	}
	return v, r.Decode(&v)
}

// PostJSON performs a POST of body with p and decodes the JSON answer into a T.
func PostJSON[T any](ctx context.Context, p AppPigeon, path string, body any, opts ...RequestOption) (T, error) {
	var v T
	r, err := p.Post(ctx, path, body, opts...)
	if err != nil {
		return v, err
	}
	return v, r.Decode(&v)
}
