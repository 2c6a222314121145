package guardactor

import (
	"net/url"
	"strings"
)

// IsLocalPath reports whether s is a safe same-origin path: it starts with a
// single '/', its second byte is neither '/' nor '\', and it has no control
// characters (browsers drop tabs and newlines, so "/\t/evil" would become
// "//evil"). Safe for concurrent use.
func IsLocalPath(s string) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == 0x7f {
			return false
		}
	}
	return true
}

const maxInlineSegs = 16

// loc is a parsed location. It lives on the evaluator's stack.
type loc struct {
	raw      string // path + optional '?' + query, fragment removed
	rawPath  string
	path     string // decoded path
	rawQuery string
	segs     []string // decoded path segments
	cont     string   // decoded last continue value; "" = absent
	hasOther bool     // a query param other than continue exists
	cleaned  bool     // a hostile continue was removed
}

func locErr(location, reason string) error {
	return &LocationError{Location: location, Reason: reason}
}

// parseLoc parses location, appending its segments to buf[:0] (callers
// pass a stack array so that nothing is allocated). It allocates only when
// the path is percent-encoded, a continue value is encoded, or the query
// must be cleaned of a hostile continue.
func parseLoc(location string, buf []string) (loc, error) {
	var l loc
	s := location
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	if !IsLocalPath(s) {
		return loc{}, locErr(location, "not a local absolute path")
	}
	l.raw = s
	l.rawPath, l.rawQuery = s, ""
	if i := strings.IndexByte(s, '?'); i >= 0 {
		l.rawPath, l.rawQuery = s[:i], s[i+1:]
	}
	l.path = l.rawPath
	if strings.IndexByte(l.rawPath, '%') >= 0 {
		p, err := url.PathUnescape(l.rawPath)
		if err != nil {
			return loc{}, locErr(location, "bad percent-escape in path")
		}
		if !IsLocalPath(p) {
			return loc{}, locErr(location, "decoded path is not a local path")
		}
		l.path = p
	}
	// segments
	l.segs = buf[:0]
	p := l.path[1:]
	p = strings.TrimSuffix(p, "/")
	for p != "" {
		var sg string
		if i := strings.IndexByte(p, '/'); i >= 0 {
			sg, p = p[:i], p[i+1:]
			if p == "" {
				return loc{}, locErr(location, "empty path segment")
			}
		} else {
			sg, p = p, ""
		}
		if sg == "" || sg == "." || sg == ".." {
			return loc{}, locErr(location, "empty, '.' or '..' path segment")
		}
		l.segs = append(l.segs, sg)
	}
	err := l.scanQuery(location)
	return l, err
}

// scanQuery finds the continue value and whether other params exist, and
// removes continue values that are not local paths (security rule).
func (l *loc) scanQuery(location string) error {
	q := l.rawQuery
	hostile := false
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return locErr(location, "bad percent-escape in query")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return locErr(location, "bad percent-escape in query")
		}
		if key != "continue" {
			l.hasOther = true
			continue
		}
		if val != "" && !IsLocalPath(val) {
			hostile = true
			continue
		}
		l.cont = val
	}
	if hostile {
		l.cleanQuery()
	}
	return nil
}

// cleanQuery removes every continue pair whose value is not a local path.
func (l *loc) cleanQuery() {
	l.rawQuery = filterQuery(l.rawQuery, func(key, val string) bool {
		return key == "continue" && val != "" && !IsLocalPath(val)
	})
	l.raw = withQuery(l.rawPath, l.rawQuery)
	l.cleaned = true
}

// queryWithoutContinue returns the raw query without continue pairs.
func (l *loc) queryWithoutContinue() string {
	if !l.hasOther {
		return ""
	}
	return filterQuery(l.rawQuery, func(key, _ string) bool { return key == "continue" })
}

// filterQuery returns the raw query q without its empty pairs and the pairs
// for which drop (given the decoded key and value) is true; the kept pairs
// keep their raw encoding and order.
func filterQuery(q string, drop func(key, val string) bool) string {
	var b strings.Builder
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, _ := url.QueryUnescape(k)
		val, _ := url.QueryUnescape(v)
		if drop(key, val) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// withQuery joins a path and a raw query.
func withQuery(path, rawQuery string) string {
	if rawQuery == "" {
		return path
	}
	return path + "?" + rawQuery
}

// EncodeQueryComponent encodes s like Dart's Uri.encodeQueryComponent:
// bytes outside [A-Za-z0-9-._~] become %XX (upper-case hex) and space
// becomes '+'. Safe for concurrent use.
func EncodeQueryComponent(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && s[i] != ' ' {
			n++
		}
	}
	if n == 0 && !strings.Contains(s, " ") {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case unreserved(c):
			b = append(b, c)
		case c == ' ':
			b = append(b, '+')
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// SameLocation reports whether a and b have equal paths and equal decoded
// query multimaps (order of pairs ignored). Locations that do not parse are
// compared byte for byte. Safe for concurrent use.
func SameLocation(a, b string) bool {
	if a == b {
		return true
	}
	ap, aq, _ := strings.Cut(a, "?")
	bp, bq, _ := strings.Cut(b, "?")
	if ap != bp {
		da, err1 := url.PathUnescape(ap)
		db, err2 := url.PathUnescape(bp)
		if err1 != nil || err2 != nil || da != db {
			return false
		}
	}
	va, err1 := url.ParseQuery(aq)
	vb, err2 := url.ParseQuery(bq)
	if err1 != nil || err2 != nil || len(va) != len(vb) {
		return false
	}
	for k, x := range va {
		y, ok := vb[k]
		if !ok || len(x) != len(y) {
			return false
		}
		cnt := map[string]int{}
		for _, v := range x {
			cnt[v]++
		}
		for _, v := range y {
			cnt[v]--
			if cnt[v] < 0 {
				return false
			}
		}
	}
	return true
}
