package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// AuthStyle says how OAuth2Refresher sends its client credentials to the
// token endpoint; the values are those of golang.org/x/oauth2's AuthStyle.
type AuthStyle int

const (
	// AuthStyleAutoDetect (the zero value) tries the Authorization header
	// first and the body second, and remembers the one the endpoint
	// accepted.
	AuthStyleAutoDetect AuthStyle = 0
	// AuthStyleInParams sends client_id and client_secret in the form body
	// (client_secret_post).
	AuthStyleInParams AuthStyle = 1
	// AuthStyleInHeader sends them as HTTP Basic auth, each form-encoded
	// first (client_secret_basic, RFC 6749 §2.3.1).
	AuthStyleInHeader AuthStyle = 2
)

// String names the style as the error messages do.
func (s AuthStyle) String() string {
	switch s {
	case AuthStyleAutoDetect:
		return "auto-detect"
	case AuthStyleInParams:
		return "credentials in the body"
	case AuthStyleInHeader:
		return "credentials in the Authorization header"
	}
	return "AuthStyle(" + strconv.Itoa(int(s)) + ")"
}

// ErrRefreshMisconfigured is matched by a token endpoint's answer that
// blames the client or the request, not the refresh token: invalid_client,
// unauthorized_client, invalid_scope, invalid_request,
// unsupported_grant_type. It is not terminal: the tokens and the session
// stay, since the refresh token may be fine and a corrected configuration
// refreshes it without a new sign-in. Like any transient failure it is
// retried only after the refresh back-off, and it does not walk up the
// back-off's steps: it waits the top step (jittered up to the maximum,
// 30 s) at once, never in a tight loop, and each attempt's error is logged
// with the code and description.
var ErrRefreshMisconfigured = messages.ErrRefreshMisconfigured

// OAuth2Error is a failed answer of an OAuth 2.0 token endpoint (RFC 6749
// §5.2). OAuth2Refresher puts one in the chain of every error that comes
// from an answer: errors.As(err, &oe) finds it. Code and Description are
// the answer's error and error_description, empty when its body carried no
// OAuth2 error (an HTML error page, say); StatusCode is the HTTP status.
// An OAuth2Error with Code invalid_grant matches ErrRefreshRejected; one
// with a configuration code matches ErrRefreshMisconfigured.
type OAuth2Error struct {
	Code        string
	Description string
	StatusCode  int
	// body is the start of a body that carried no OAuth2 error, for Error.
	body string
}

func (e *OAuth2Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pigeon: token endpoint answered %d", e.StatusCode)
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, " %s", e.Code)
		if e.Description != "" {
			fmt.Fprintf(&b, ": %s", e.Description)
		}
	case e.Description != "":
		fmt.Fprintf(&b, ": %s", e.Description)
	default:
		b.WriteString(" without an OAuth2 error")
		if e.body != "" {
			fmt.Fprintf(&b, ": %s", e.body)
		}
	}
	return b.String()
}

// Unwrap returns ErrRefreshRejected for invalid_grant,
// ErrRefreshMisconfigured for a configuration code, nil otherwise.
func (e *OAuth2Error) Unwrap() error {
	switch e.Code {
	case "invalid_grant":
		return ErrRefreshRejected
	case "invalid_client", "unauthorized_client", "invalid_scope", "invalid_request", "unsupported_grant_type":
		return ErrRefreshMisconfigured
	}
	return nil
}

// authStyleKey names one client of one token endpoint in
// RefreshClient.authStyles.
type authStyleKey struct{ tokenURL, clientID string }

// maxTokenAnswer bounds how much of a token endpoint's answer is read.
const maxTokenAnswer = 1 << 20

func (o OAuth2Refresher) refresh(ctx context.Context, tokenURL, refreshToken string, c *RefreshClient) (RefreshTokenResponse, error) {
	style, probe := o.AuthStyle, false
	key := authStyleKey{tokenURL, o.ClientID}
	switch {
	case o.ClientID == "" || o.ClientSecret == "":
		style = AuthStyleInParams // a public client: client_id in the body
	case style == AuthStyleAutoDetect:
		if v, ok := c.authStyles.Load(key); ok {
			style = v.(AuthStyle)
		} else {
			style, probe = AuthStyleInHeader, true
		}
	}
	out, err := o.exchange(ctx, tokenURL, refreshToken, style, c)
	if probe && refusedClient(err) {
		first := err
		style = AuthStyleInParams
		out, err = o.exchange(ctx, tokenURL, refreshToken, style, c)
		if err != nil {
			err = fmt.Errorf("%w (with the credentials in the Authorization header: %v)", err, first)
		}
	}
	if probe && (err == nil || errors.Is(err, ErrRefreshRejected)) {
		// The endpoint accepted the client (invalid_grant comes after
		// client authentication): remember where its credentials go.
		c.authStyles.Store(key, style)
	}
	if err != nil {
		where := style.String()
		if o.ClientSecret == "" {
			where = "public client"
		}
		u, _ := url.Parse(tokenURL)
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		return RefreshTokenResponse{}, fmt.Errorf("pigeon: OAuth2Refresher: %s, client %q, %s: %w", u, o.ClientID, where, err)
	}
	return out, nil
}

// refusedClient reports an answer saying the client's credentials were not
// accepted where they were sent: then auto-detect tries the body. An
// answer about the grant, a 5xx or no answer at all never retries.
func refusedClient(err error) bool {
	var oe *OAuth2Error
	if !errors.As(err, &oe) {
		return false
	}
	switch oe.Code {
	case "invalid_client", "unauthorized_client", "invalid_request":
		return true
	case "":
		return oe.StatusCode == http.StatusBadRequest || oe.StatusCode == http.StatusUnauthorized
	}
	return false
}

// exchange sends one refresh_token grant; a request that got no answer is
// sent once more with the same refresh token.
func (o OAuth2Refresher) exchange(ctx context.Context, tokenURL, refreshToken string, style AuthStyle, c *RefreshClient) (RefreshTokenResponse, error) {
	status, body, err := o.post(ctx, tokenURL, refreshToken, style, c)
	if err != nil && ctx.Err() == nil {
		first := err
		status, body, err = o.post(ctx, tokenURL, refreshToken, style, c)
		if err != nil {
			return RefreshTokenResponse{}, fmt.Errorf("no answer from the token endpoint, twice with the same refresh token: %w (first: %v)", err, first)
		}
	}
	if err != nil {
		return RefreshTokenResponse{}, fmt.Errorf("no answer from the token endpoint: %w", err)
	}
	return tokenAnswer(status, body, c.Now())
}

// post sends the grant and reads the whole answer; an error means no
// answer arrived (or it was cut off).
func (o OAuth2Refresher) post(ctx context.Context, tokenURL, refreshToken string, style AuthStyle, c *RefreshClient) (int, []byte, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if len(o.Scopes) > 0 {
		form.Set("scope", strings.Join(o.Scopes, " "))
	}
	if o.ClientID != "" && style == AuthStyleInParams {
		form.Set("client_id", o.ClientID)
		if o.ClientSecret != "" {
			form.Set("client_secret", o.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if o.ClientID != "" && style == AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// tokenAnswer reads a token endpoint's answer: a token response, or an
// *OAuth2Error (also for a 2xx that carries an error or no access token).
func tokenAnswer(status int, raw []byte, now time.Time) (RefreshTokenResponse, error) {
	var body struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Error        string          `json:"error"`
		ErrorDesc    string          `json:"error_description"`
	}
	jsonErr := json.Unmarshal(raw, &body)
	if jsonErr != nil {
		body.Error, body.ErrorDesc = "", ""
	}
	ok := status >= 200 && status < 300
	switch {
	case body.Error != "" && (!ok || body.AccessToken == ""):
		// some endpoints answer 200 with an error
		return RefreshTokenResponse{}, &OAuth2Error{Code: body.Error, Description: body.ErrorDesc, StatusCode: status}
	case !ok:
		return RefreshTokenResponse{}, &OAuth2Error{StatusCode: status, body: bodySnippet(raw)}
	case jsonErr != nil:
		return RefreshTokenResponse{}, &OAuth2Error{StatusCode: status, Description: "malformed token response: " + jsonErr.Error()}
	case body.AccessToken == "":
		return RefreshTokenResponse{}, &OAuth2Error{StatusCode: status, Description: "token response has no access_token"}
	}
	out := RefreshTokenResponse{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken}
	if len(body.ExpiresIn) > 0 && string(body.ExpiresIn) != "null" {
		s := strings.Trim(string(body.ExpiresIn), `"`)
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs < 0 {
			return RefreshTokenResponse{}, &OAuth2Error{StatusCode: status, Description: "bad expires_in " + bodySnippet(body.ExpiresIn)}
		}
		out.ExpiresAt = now.Add(time.Duration(secs * float64(time.Second)))
	}
	return out, nil
}
