package messages

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
)

// Header maps in messages carry credentials (the bearer, cookies, API
// keys). A message that holds one redacts itself wherever it is printed or
// logged — a dead letter is logged by protoactor with the message in it —
// so only the header names show, every value as [REDACTED]. Code that
// needs the values reads the map itself.

// redactedHeaders lists h's names, sorted, each with a redacted value.
func redactedHeaders(h http.Header) string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("map[")
	for i, k := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString(":" + redacted)
	}
	b.WriteByte(']')
	return b.String()
}

// String redacts the header values.
func (m UpdateHeaders) String() string {
	return "UpdateHeaders{Headers:" + redactedHeaders(m.Headers) + "}"
}

// GoString redacts the header values for %#v.
func (m UpdateHeaders) GoString() string {
	return "messages.UpdateHeaders{Headers:" + redactedHeaders(m.Headers) + "}"
}

// Format redacts for every fmt verb.
func (m UpdateHeaders) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, m.String(), m.GoString)
}

// LogValue redacts for log/slog (and zap through zapslog, which is how
// protoactor's dead-letter log reaches a zap logger).
func (m UpdateHeaders) LogValue() slog.Value { return slog.StringValue(m.String()) }

// MarshalJSON redacts for encoders that reflect through encoding/json
// (zap.Reflect): header names only.
func (m UpdateHeaders) MarshalJSON() ([]byte, error) {
	h := make(map[string]string, len(m.Headers))
	for k := range m.Headers {
		h[k] = redacted
	}
	return json.Marshal(struct{ Headers map[string]string }{h})
}
