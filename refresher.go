package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
// keeps the stored one; a zero ExpiresAt means unknown (a JWT access
// token's `exp` is read, unverified, to schedule the next refresh). Data,
// when set, replaces the account's stored data.
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
}

// HTTPClient returns the plain client behind c.
func (c *RefreshClient) HTTPClient() *http.Client { return c.core.client }

// Now returns the current time of pigeon's clock.
func (c *RefreshClient) Now() time.Time { return c.now() }

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
// refresh token was rejected. The zero Path means "/auth/refresh".
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
		out.ExpiresAt = t
	}
	return out, nil
}

// OAuth2Refresher refreshes with an OAuth 2.0 token endpoint (RFC 6749 §6):
// grant_type=refresh_token at the absolute TokenURL (any host), client
// credentials in HTTP Basic auth, expires_in → ExpiresAt, a missing
// refresh_token keeps the old one, and invalid_grant (400/401) →
// ErrRefreshRejected. A 401 from the API triggers a refresh.
type OAuth2Refresher struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
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
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if len(o.Scopes) > 0 {
		form.Set("scope", strings.Join(o.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if o.ClientID != "" {
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	}
	resp, err := c.Do(req)
	if err != nil {
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: %w", err)
	}
	r := readResponse(resp)
	var body struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Error        string          `json:"error"`
		ErrorDesc    string          `json:"error_description"`
	}
	jsonErr := json.Unmarshal(r.Body, &body)
	if r.StatusCode >= 400 {
		if (r.StatusCode == http.StatusBadRequest || r.StatusCode == http.StatusUnauthorized) && body.Error == "invalid_grant" {
			return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: invalid_grant: %w", ErrRefreshRejected)
		}
		if body.Error != "" {
			return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: token endpoint error %q (%d)", body.Error, r.StatusCode)
		}
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: token endpoint answered %d", r.StatusCode)
	}
	if jsonErr != nil {
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: malformed token response: %w", jsonErr)
	}
	if body.AccessToken == "" {
		return RefreshTokenResponse{}, errors.New("pigeon: OAuth2Refresher: token response has no access_token")
	}
	out := RefreshTokenResponse{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken}
	if len(body.ExpiresIn) > 0 && string(body.ExpiresIn) != "null" {
		s := strings.Trim(string(body.ExpiresIn), `"`)
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs < 0 {
			return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: bad expires_in %s", body.ExpiresIn)
		}
		out.ExpiresAt = c.Now().Add(time.Duration(secs * float64(time.Second)))
	}
	return out, nil
}
