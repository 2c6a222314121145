package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// RefreshTokenManager decides when a response means "refresh the token" and
// performs the refresh. pigeon calls RefreshToken from one goroutine at a
// time per account, off its actors' mailboxes, with a context that carries
// the refresh timeout; a panic is recovered and treated as a transient
// failure. Return an error wrapping ErrRefreshRejected when the server
// refused the refresh token (terminal: the session ends); any other error
// is transient. Implementations must be safe for concurrent use
// (ShouldRefresh is called from every request).
type RefreshTokenManager interface {
	ShouldRefresh(resp *http.Response) bool
	RefreshToken(ctx context.Context, refreshToken string, c *RefreshClient) (RefreshTokenResponse, error)
}

// RefreshTokenResponse is the result of a refresh. An empty RefreshToken
// keeps the stored one. ExpiresAt is on pigeon's clock (WithClock): count
// an expires_in from when the answer arrived (RefreshClient.Now), and turn
// an absolute time the server wrote into pigeon's clock with
// RefreshClient.LocalTime. A zero ExpiresAt means unknown: a JWT access
// token's `exp` is read, unverified, and corrected the same way, to
// schedule the next refresh. Data, when set, replaces the account's stored
// data.
type RefreshTokenResponse struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	Data         json.RawMessage
}

// RefreshClient is the HTTP client a RefreshTokenManager uses: it resolves
// paths against the base URL and does NOT go through the auth layer (no
// bearer, no refresh, no replay), so a refresh never loops. Safe for
// concurrent use.
type RefreshClient struct {
	core *httpCore
	now  func() time.Time
	// server tracks the offset of the answers' Date headers.
	server *serverClock
	// authStyles remembers, per OAuth2 token endpoint and client, the
	// AuthStyle that endpoint accepted (key authStyleKey, value AuthStyle).
	authStyles sync.Map
}

// HTTPClient returns the plain client behind c.
func (c *RefreshClient) HTTPClient() *http.Client { return c.core.client }

// Now returns the current time of pigeon's clock.
func (c *RefreshClient) Now() time.Time { return c.now() }

// LocalTime turns a time the server wrote (an absolute expiry, a JWT
// `exp`) into pigeon's clock: it subtracts the offset between the Date
// header of the last answer this client received and pigeon's clock when
// that answer arrived. Offsets under 2 s (the header's resolution plus
// transit) count as none; a Date more than 1 h off is ignored (no drift
// to trust: a cached answer, a proxy, a clock set by hand), so no Date
// moves an expiry by more than an hour. Without a usable Date seen, t is
// returned as is.
func (c *RefreshClient) LocalTime(t time.Time) time.Time { return c.server.local(t) }

// Post sends body (encoded as the facade's verbs do: JSON by default) to
// path. Status >= 400 returns the Response with a *StatusError.
func (c *RefreshClient) Post(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return c.core.do(ctx, http.MethodPost, path, body, opts)
}

// Do sends req as is through the plain client.
func (c *RefreshClient) Do(req *http.Request) (*http.Response, error) { return c.core.client.Do(req) }

// JSONRefresher implements pigeon's recommended backend contract:
// POST {Path} with {"refreshToken": "..."} answered by
// {"data": {"accessToken": "...", "refreshToken": "...", "expiresAt"?: RFC3339}}.
// A 401 triggers a refresh; a 400 or 401 from the refresh endpoint means the
// refresh token was rejected. expiresAt is the server's clock: it is
// corrected by the offset of the answer's Date header (LocalTime). The
// zero Path means "/auth/refresh".
type JSONRefresher struct{ Path string }

var _ RefreshTokenManager = JSONRefresher{}

// ShouldRefresh reports a 401.
func (JSONRefresher) ShouldRefresh(resp *http.Response) bool {
	return resp.StatusCode == http.StatusUnauthorized
}

// RefreshToken calls the refresh endpoint.
func (j JSONRefresher) RefreshToken(ctx context.Context, refreshToken string, c *RefreshClient) (RefreshTokenResponse, error) {
	path := j.Path
	if path == "" {
		path = "/auth/refresh"
	}
	resp, err := c.Post(ctx, path, map[string]string{"refreshToken": refreshToken})
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && (se.Response.StatusCode == http.StatusBadRequest || se.Response.StatusCode == http.StatusUnauthorized) {
			return RefreshTokenResponse{}, fmt.Errorf("pigeon: refresh endpoint answered %d: %w", se.Response.StatusCode, ErrRefreshRejected)
		}
		return RefreshTokenResponse{}, err
	}
	var body struct {
		Data struct {
			AccessToken  string          `json:"accessToken"`
			RefreshToken string          `json:"refreshToken"`
			ExpiresAt    string          `json:"expiresAt"`
			Extra        json.RawMessage `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: refresh endpoint sent malformed JSON: %w", err)
	}
	if body.Data.AccessToken == "" {
		return RefreshTokenResponse{}, errors.New("pigeon: refresh endpoint sent no data.accessToken")
	}
	out := RefreshTokenResponse{AccessToken: body.Data.AccessToken, RefreshToken: body.Data.RefreshToken, Data: body.Data.Extra}
	if body.Data.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, body.Data.ExpiresAt)
		if err != nil {
			return RefreshTokenResponse{}, fmt.Errorf("pigeon: refresh endpoint sent a bad expiresAt %q: %w", body.Data.ExpiresAt, err)
		}
		out.ExpiresAt = c.LocalTime(t)
	}
	return out, nil
}

// OAuth2Refresher refreshes with an OAuth 2.0 token endpoint (RFC 6749 §6):
// grant_type=refresh_token at the absolute TokenURL (any host).
//
// Client credentials go where AuthStyle says. A public client (ClientID set,
// ClientSecret empty) sends client_id in the body and nothing else, whatever
// AuthStyle says; an empty ClientID sends no client credentials. The zero
// AuthStyle, AuthStyleAutoDetect, tries HTTP Basic first and, when the
// endpoint refuses the client (invalid_client, unauthorized_client,
// invalid_request, or a 400/401 without an OAuth2 error), the same request
// once more with the credentials in the body; the style the endpoint
// accepted is remembered per TokenURL and ClientID by the RefreshClient (so
// by the AuthorizedPigeon) for its lifetime.
//
// Answers: expires_in becomes ExpiresAt; a missing refresh_token keeps the
// old one. Every error answer is an *OAuth2Error in the returned chain:
// invalid_grant matches ErrRefreshRejected (the session ends);
// invalid_client, unauthorized_client, invalid_scope, invalid_request and
// unsupported_grant_type match ErrRefreshMisconfigured (not terminal: see
// ErrRefreshMisconfigured); anything else (5xx, temporarily_unavailable, an
// HTML error page) is transient. A request that got no answer at all
// (connection reset, the answer lost on the way) is sent once more, at
// once, with the same refresh token: a server that rotates refresh tokens
// with a reuse interval answers it, so a lost answer does not cost the
// session; nothing is resent after an answer arrived. A 401 from the API
// triggers a refresh.
//
// The zero value of each field: Scopes nil sends no scope; AuthStyle zero
// auto-detects. OAuth2Refresher is a value; it is safe for concurrent use.
type OAuth2Refresher struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	AuthStyle    AuthStyle
}

var _ RefreshTokenManager = OAuth2Refresher{}

// ShouldRefresh reports a 401.
func (OAuth2Refresher) ShouldRefresh(resp *http.Response) bool {
	return resp.StatusCode == http.StatusUnauthorized
}

// RefreshToken performs the refresh_token grant.
func (o OAuth2Refresher) RefreshToken(ctx context.Context, refreshToken string, c *RefreshClient) (RefreshTokenResponse, error) {
	u, err := url.Parse(o.TokenURL)
	if err != nil || !u.IsAbs() {
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: TokenURL %q is not an absolute URL", o.TokenURL)
	}
	return o.refresh(ctx, u.String(), refreshToken, c)
}
