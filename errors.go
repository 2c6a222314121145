package pigeon

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// Sentinel errors. They are the same values as package messages defines,
// so errors.Is matches them whether they came from the facade or from an
// actor directly.
var (
	ErrNoAuth               = messages.ErrNoAuth
	ErrSessionExpired       = messages.ErrSessionExpired
	ErrRefreshUnavailable   = messages.ErrRefreshUnavailable
	ErrLoggedOut            = messages.ErrLoggedOut
	ErrBodyNotReplayable    = messages.ErrBodyNotReplayable
	ErrClosed               = messages.ErrClosed
	ErrSocketNotInitialized = messages.ErrSocketNotInitialized
	ErrSlowConsumer         = messages.ErrSlowConsumer
	ErrBufferFull           = messages.ErrBufferFull
	ErrRefreshRejected      = messages.ErrRefreshRejected
	ErrUnknownAccount       = messages.ErrUnknownAccount
	// ErrAckTimeout: EmitWithAck got no ack within WithAckTimeout.
	ErrAckTimeout = messages.ErrAckTimeout
)

// Store errors from NewAuthorized, the same values as package persistence
// defines.
var (
	// ErrWrongKey: the store was written with another encryption key.
	ErrWrongKey = persistence.ErrWrongKey
	// ErrLocked: another client (in this or another process) has the
	// store directory open.
	ErrLocked = persistence.ErrLocked
	// ErrCorrupt: a stored value cannot be decoded, or the store's files
	// are damaged (the error names the directory and what to do).
	ErrCorrupt = persistence.ErrCorrupt
	// ErrStoreFull: the store's disk has no room for a change; nothing was
	// written, and writes work again once space is freed.
	ErrStoreFull = persistence.ErrStoreFull
	// ErrStoreUnavailable: the store's directory cannot be written (read
	// only, no permission); nothing was written.
	ErrStoreUnavailable = persistence.ErrStoreUnavailable
)

// StatusError is returned, together with the Response, for every answer
// with status >= 400. Its message names the request (method and URL, never
// the query) and the answer (status and the first bytes of the body).
// Err, when set, is why the answer was a refusal pigeon could not prevent:
// ErrNoAuth for a request sent while no account was signed in; errors.Is
// sees through it.
type StatusError struct {
	Method   string
	URL      string // scheme, host and path; no query, fragment or user info
	Response *Response
	Err      error
}

// statusSnippet is how much of a refusal's body the message quotes.
const statusSnippet = 200

func newStatusError(req *http.Request, r *Response) *StatusError {
	e := &StatusError{Response: r}
	if req != nil {
		e.Method = req.Method
		if req.URL != nil {
			u := *req.URL
			u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
			e.URL = u.String()
		}
	}
	return e
}

func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString("pigeon: ")
	if e.Method != "" || e.URL != "" {
		fmt.Fprintf(&b, "%s %s: ", e.Method, e.URL)
	}
	if e.Response == nil {
		b.WriteString("HTTP error")
	} else {
		fmt.Fprintf(&b, "server answered %d %s", e.Response.StatusCode, http.StatusText(e.Response.StatusCode))
		if msg := bodySnippet(e.Response.Body); msg != "" {
			fmt.Fprintf(&b, ": %s", msg)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *StatusError) Unwrap() error { return e.Err }

// bodySnippet is the start of a body as one printable line: control
// characters become spaces, invalid UTF-8 is replaced, and a body longer
// than statusSnippet bytes ends in "…".
func bodySnippet(body []byte) string {
	cut := len(body) > statusSnippet
	if cut {
		body = body[:statusSnippet]
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(body), "\uFFFD"))
	s = strings.TrimSpace(s)
	if cut {
		s += "…"
	}
	return s
}
