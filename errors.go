package pigeon

import (
	"fmt"
	"net/http"

	"github.com/apppigeon/pigeon/messages"
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
)

// StatusError is returned, together with the Response, for every answer
// with status >= 400.
type StatusError struct{ Response *Response }

func (e *StatusError) Error() string {
	if e.Response == nil {
		return "pigeon: HTTP error"
	}
	return fmt.Sprintf("pigeon: server answered %d %s", e.Response.StatusCode, http.StatusText(e.Response.StatusCode))
}
