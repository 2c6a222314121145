package messages

import (
	"fmt"
	"log/slog"
)

// Secret is a token, key or password. It redacts itself wherever it is
// printed or logged: String, GoString, fmt verbs (%v, %+v, %#v, %s, %q, %x),
// slog (LogValue) and zap (through fmt or slog). string(s) is the value.
// A Secret is an immutable value, safe for concurrent use.
type Secret string

const redacted = "[REDACTED]"

// String returns a redaction marker, never the value.
func (s Secret) String() string { return s.mask() }

// GoString returns a redaction marker for %#v.
func (s Secret) GoString() string { return `messages.Secret("` + s.mask() + `")` }

// Format redacts for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.mask(), s.GoString) }

// formatRedacted writes goString() for %#v and plain for every other verb.
func formatRedacted(f fmt.State, verb rune, plain string, goString func() string) {
	if verb == 'v' && f.Flag('#') {
		plain = goString()
	}
	_, _ = f.Write([]byte(plain))
}

// LogValue redacts for log/slog (and zap through zapslog).
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// MarshalText redacts for encoders that use encoding.TextMarshaler (zap's
// reflection encoder, encoding/json). Use string(s) to serialise the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}
