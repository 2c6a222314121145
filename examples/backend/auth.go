package backend

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Tokens is a set of credentials issued by the Backend (signup, login,
// IssueTokens, CreateUser). It is also the JSON shape of the `data` of
// /auth/signup and /auth/login answers.
type Tokens struct {
	UID          string    `json:"uid"`
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"` // access-token expiry, RFC 3339 with nanoseconds, UTC
}

// refreshAnswer is the `data` of a /auth/refresh answer (the JSONRefresher
// contract).
type refreshAnswer struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

type credentialsBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type refreshBody struct {
	RefreshToken string `json:"refreshToken"`
}

type meAnswer struct {
	UID   string `json:"uid"`
	Email string `json:"email"`
}

type user struct {
	uid, email string
	salt, hash []byte // nil for passwordless users made by IssueTokens
}

type accessEntry struct {
	uid       string
	expiresAt time.Time
}

type refreshEntry struct {
	uid       string
	expiresAt time.Time // zero: never
}

type ghost struct {
	id, name string
}

// principal is who a bearer token belongs to.
type principal struct {
	ghost     bool
	id        string // uid or ghost id
	name      string // email or ghost name
	expiresAt time.Time
}

type tokenStatus int

const (
	tokenUnknown tokenStatus = iota
	tokenValid
	tokenExpired
)

// authStore holds users, ghosts and tokens; every field is guarded by mu.
type authStore struct {
	mu          sync.Mutex
	byEmail     map[string]*user
	byID        map[string]*user
	access      map[string]accessEntry
	refresh     map[string]refreshEntry
	used        map[string]refreshEntry // rotated tokens within the reuse interval (expiresAt: its end)
	ghosts      map[string]*ghost
	ghostTokens map[string]string // token → ghost id
	issued      int
}

func (s *authStore) init() {
	s.byEmail = make(map[string]*user)
	s.byID = make(map[string]*user)
	s.access = make(map[string]accessEntry)
	s.refresh = make(map[string]refreshEntry)
	s.used = make(map[string]refreshEntry)
	s.ghosts = make(map[string]*ghost)
	s.ghostTokens = make(map[string]string)
}

// pruneAfter: expired tokens are remembered this long (so that they are
// reported as expired, not unknown), then forgotten.
const pruneAfter = time.Hour

const pbkdf2Iterations = 4096

func hashPassword(password string, salt []byte) []byte {
	h, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iterations, 32)
	if err != nil { // only for out-of-range parameters, which these are not
		return nil
	}
	return h
}

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// issueLocked issues an access and a refresh token for uid. s.mu is held.
func (b *Backend) issueLocked(uid string) Tokens {
	s := &b.auth
	now := b.cfg.clock()
	exp := now.Add(b.cfg.accessTTL).UTC()
	var at string
	if b.cfg.jwt {
		at = b.signJWT(uid, now, exp)
	} else {
		at = randomString(32)
	}
	rt := randomString(32)
	s.access[at] = accessEntry{uid: uid, expiresAt: exp}
	re := refreshEntry{uid: uid}
	if b.cfg.refreshTTL > 0 {
		re.expiresAt = now.Add(b.cfg.refreshTTL)
	}
	s.refresh[rt] = re
	s.issued++
	if s.issued%1024 == 0 {
		cut := now.Add(-pruneAfter)
		for k, e := range s.access {
			if e.expiresAt.Before(cut) {
				delete(s.access, k)
			}
		}
		for k, e := range s.refresh {
			if !e.expiresAt.IsZero() && e.expiresAt.Before(cut) {
				delete(s.refresh, k)
			}
		}
		for k, e := range s.used {
			if e.expiresAt.Before(now) {
				delete(s.used, k)
			}
		}
	}
	return Tokens{UID: uid, AccessToken: at, RefreshToken: rt, ExpiresAt: exp}
}

func (b *Backend) signJWT(uid string, iat, exp time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(struct {
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
		Jti string `json:"jti"`
	}{uid, iat.Unix(), exp.Unix(), randomString(12)})
	unsigned := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, b.jwtKey)
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

// lookupBearer resolves a user access token or a ghost token.
func (b *Backend) lookupBearer(token string) (principal, tokenStatus) {
	if token == "" {
		return principal{}, tokenUnknown
	}
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.access[token]; ok {
		u := s.byID[e.uid]
		p := principal{id: e.uid, expiresAt: e.expiresAt}
		if u != nil {
			p.name = u.email
		}
		if !b.cfg.clock().Before(e.expiresAt) {
			return p, tokenExpired
		}
		return p, tokenValid
	}
	if id, ok := s.ghostTokens[token]; ok {
		g := s.ghosts[id]
		return principal{ghost: true, id: id, name: g.name}, tokenValid
	}
	return principal{}, tokenUnknown
}

// createUserLocked registers a user; s.mu is held.
func (b *Backend) createUserLocked(email, password string) (*user, error) {
	s := &b.auth
	if _, ok := s.byEmail[email]; ok {
		return nil, ErrEmailTaken
	}
	u := &user{uid: "u_" + randomString(9), email: email, salt: randomBytes(16)}
	u.hash = hashPassword(password, u.salt)
	s.byEmail[email] = u
	s.byID[u.uid] = u
	return u, nil
}

// CreateUser registers a user as POST /auth/signup does and returns its first
// tokens. Errors: ErrInvalidInput (empty email or password), ErrEmailTaken.
// Safe for concurrent use.
func (b *Backend) CreateUser(email, password string) (Tokens, error) {
	email = normalizeEmail(email)
	if email == "" || password == "" {
		return Tokens{}, fmt.Errorf("%w: email and password are required", ErrInvalidInput)
	}
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := b.createUserLocked(email, password)
	if err != nil {
		return Tokens{}, err
	}
	b.stats.signups.Add(1)
	return b.issueLocked(u.uid), nil
}

// IssueTokens issues a fresh access and refresh token for uid, as a login
// would. An unknown uid becomes a passwordless user with the email
// "<uid>@users.invalid" (so tests can mint accounts without signing up).
// Error: ErrInvalidInput for an empty uid. Safe for concurrent use.
func (b *Backend) IssueTokens(uid string) (Tokens, error) {
	if strings.TrimSpace(uid) == "" {
		return Tokens{}, fmt.Errorf("%w: empty uid", ErrInvalidInput)
	}
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[uid]; !ok {
		u := &user{uid: uid, email: strings.ToLower(uid) + "@users.invalid"}
		s.byID[uid] = u
		if _, taken := s.byEmail[u.email]; !taken {
			s.byEmail[u.email] = u
		}
	}
	return b.issueLocked(uid), nil
}

// ExpireAccessToken makes an access token expired from now on (by the
// injected clock): HTTP answers 401 invalid_token and `init` closes 4003. It
// reports whether the token was known. Safe for concurrent use.
func (b *Backend) ExpireAccessToken(token string) bool {
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.access[token]
	if !ok {
		return false
	}
	e.expiresAt = b.cfg.clock().Add(-time.Nanosecond)
	s.access[token] = e
	return true
}

// RevokeAccessToken forgets an access token: it becomes unknown (HTTP 401,
// `init` closes 4501). It reports whether the token was known. Safe for
// concurrent use.
func (b *Backend) RevokeAccessToken(token string) bool {
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.access[token]
	delete(s.access, token)
	return ok
}

// RevokeRefreshToken invalidates a refresh token: using it answers 401
// invalid_grant. It reports whether the token was valid. Safe for concurrent
// use.
func (b *Backend) RevokeRefreshToken(token string) bool {
	s := &b.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.refresh[token]
	delete(s.refresh, token)
	return ok
}

func (b *Backend) handleSignup(w http.ResponseWriter, r *http.Request) {
	var body credentialsBody
	if !decodeBody(w, r, &body) {
		return
	}
	email := normalizeEmail(body.Email)
	if email == "" || body.Password == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "email and password are required")
		return
	}
	s := &b.auth
	s.mu.Lock()
	u, err := b.createUserLocked(email, body.Password)
	var t Tokens
	if err == nil {
		t = b.issueLocked(u.uid)
	}
	s.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusConflict, "email_taken", "email already registered")
		return
	}
	b.stats.signups.Add(1)
	writeJSON(w, http.StatusCreated, t)
}

func (b *Backend) handleLogin(w http.ResponseWriter, r *http.Request) {
	var body credentialsBody
	if !decodeBody(w, r, &body) {
		return
	}
	email := normalizeEmail(body.Email)
	s := &b.auth
	s.mu.Lock()
	u := s.byEmail[email]
	s.mu.Unlock()
	// Hash outside the lock; compare even for unknown users to keep timing flat.
	var salt, want []byte
	if u != nil && u.hash != nil {
		salt, want = u.salt, u.hash
	} else {
		salt, want = make([]byte, 16), make([]byte, 32)
	}
	got := hashPassword(body.Password, salt)
	if u == nil || u.hash == nil || subtle.ConstantTimeCompare(got, want) != 1 {
		b.stats.loginFailures.Add(1)
		writeError(w, http.StatusUnauthorized, "invalid_credentials", "wrong email or password")
		return
	}
	s.mu.Lock()
	t := b.issueLocked(u.uid)
	s.mu.Unlock()
	b.stats.logins.Add(1)
	writeJSON(w, http.StatusOK, t)
}

func (b *Backend) handleRefresh(w http.ResponseWriter, r *http.Request) {
	b.stats.refreshCalls.Add(1)
	if hook := b.cfg.refreshHook; hook != nil {
		// Read the body to its end first: only then does net/http watch the
		// connection and cancel r.Context() when the client goes away.
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			b.stats.refreshRejected.Add(1)
			writeError(w, http.StatusBadRequest, "bad_request", "cannot read body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		ctx, cancel := context.WithCancel(r.Context())
		stop := context.AfterFunc(b.closeCtx, cancel)
		handled := hook(w, r.WithContext(ctx))
		stop()
		cancel()
		if handled {
			return
		}
	}
	var body refreshBody
	if !decodeBodyThen(w, r, &body, func() { b.stats.refreshRejected.Add(1) }) {
		return
	}
	if body.RefreshToken == "" {
		b.stats.refreshRejected.Add(1)
		writeError(w, http.StatusBadRequest, "invalid_request", "refreshToken is required")
		return
	}
	s := &b.auth
	s.mu.Lock()
	e, ok := s.refresh[body.RefreshToken]
	expired := ok && !e.expiresAt.IsZero() && !b.cfg.clock().Before(e.expiresAt)
	var t Tokens
	if ok {
		// Rotation: the used token is gone whatever happens next.
		delete(s.refresh, body.RefreshToken)
		if !expired {
			t = b.issueLocked(e.uid)
			if d := b.cfg.reuseInterval; d > 0 {
				s.used[body.RefreshToken] = refreshEntry{uid: e.uid, expiresAt: b.cfg.clock().Add(d)}
			}
		}
	} else if u, reused := s.used[body.RefreshToken]; reused && b.cfg.clock().Before(u.expiresAt) {
		ok = true
		t = b.issueLocked(u.uid)
	}
	s.mu.Unlock()
	if !ok || expired {
		b.stats.refreshRejected.Add(1)
		msg := "refresh token unknown or already used"
		if expired {
			msg = "refresh token expired"
		}
		writeError(w, http.StatusUnauthorized, "invalid_grant", msg)
		return
	}
	b.stats.refreshSucceeded.Add(1)
	writeJSON(w, http.StatusOK, refreshAnswer{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, ExpiresAt: t.ExpiresAt})
}

func (b *Backend) handleLogout(w http.ResponseWriter, r *http.Request) {
	var body refreshBody
	if !decodeBody(w, r, &body) {
		return
	}
	if b.RevokeRefreshToken(body.RefreshToken) {
		b.stats.logouts.Add(1)
	}
	if tok := bearer(r.Header.Get("Authorization")); tok != "" {
		b.RevokeAccessToken(tok)
	}
	w.WriteHeader(http.StatusNoContent)
}

// authenticate checks the request's bearer token. With allowGhost, ghost
// tokens are accepted too. On failure it writes the 401 and returns false.
func (b *Backend) authenticate(w http.ResponseWriter, r *http.Request, allowGhost bool) (principal, bool) {
	tok := bearer(r.Header.Get("Authorization"))
	p, st := b.lookupBearer(tok)
	if st == tokenValid && (allowGhost || !p.ghost) {
		return p, true
	}
	msg := "unknown access token"
	switch {
	case tok == "":
		msg = "missing bearer token"
	case st == tokenExpired:
		msg = "access token expired"
	case st == tokenValid:
		msg = "a ghost token cannot be used here"
	}
	b.stats.unauthorized.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, "invalid_token", msg)
	return principal{}, false
}

func (b *Backend) handleMe(w http.ResponseWriter, r *http.Request) {
	p, ok := b.authenticate(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, meAnswer{UID: p.id, Email: p.name})
}

// EchoAnswer is the `data` of /echo and /public/echo answers.
type EchoAnswer struct {
	OK     bool   `json:"ok"`
	Method string `json:"method"`
	UID    string `json:"uid,omitempty"`   // the caller (uid or ghost id); empty on /public/echo
	Body   string `json:"body,omitempty"`  // the request body, for POST
	Query  string `json:"query,omitempty"` // the raw query string
}

func (b *Backend) handleEcho(auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p principal
		if auth {
			var ok bool
			if p, ok = b.authenticate(w, r, true); !ok {
				return
			}
		}
		ans := EchoAnswer{OK: true, Method: r.Method, UID: p.id, Query: r.URL.RawQuery}
		if r.Method == http.MethodPost {
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "cannot read body: "+err.Error())
				return
			}
			ans.Body = string(data)
		}
		writeJSON(w, http.StatusOK, ans)
	}
}
