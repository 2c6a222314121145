package pigeon

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/apppigeon/pigeon/actors"
)

// Bounds of the clock-skew correction (see serverClock).
const (
	// skewNoise: offsets this small are not corrected: a Date header has
	// one-second resolution and the answer took some time to arrive.
	skewNoise = 2 * time.Second
	// maxSkew bounds the correction: a Date further off than this is no
	// drift pigeon trusts (a cached answer, a broken proxy, a clock set
	// wrong by hand or a test's fake one) and is ignored, so no Date can
	// move an expiry by more; the 401 → refresh path still covers.
	maxSkew = time.Hour
)

// serverClock estimates how far the token servers' clock is from pigeon's
// (WithClock's): the offset between the Date header of the last answer
// the refresh client got and pigeon's clock when that answer arrived. It
// turns times the server wrote (an absolute expiresAt, a JWT `exp`) into
// pigeon's clock. Offsets within skewNoise count as none; offsets beyond
// maxSkew are ignored (the estimate stays as it was). Safe for concurrent
// use.
type serverClock struct {
	now    func() time.Time
	offset atomic.Int64 // server minus local, ns
}

// observe records the offset of resp's Date header, if it has one.
func (s *serverClock) observe(resp *http.Response) {
	v := resp.Header.Get("Date")
	if v == "" {
		return
	}
	d, err := http.ParseTime(v)
	if err != nil {
		return
	}
	off := d.Sub(s.now())
	switch {
	case off > maxSkew || off < -maxSkew:
		return
	case off > -skewNoise && off < skewNoise:
		off = 0
	}
	s.offset.Store(int64(off))
}

// local returns server time t on pigeon's clock.
func (s *serverClock) local(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(-time.Duration(s.offset.Load()))
}

// jwtExpiry returns the unverified `exp` of a JWT access token on
// pigeon's clock, zero when token is no JWT with an `exp`.
func (s *serverClock) jwtExpiry(token string) time.Time {
	return s.local(actors.JWTExpiry(token))
}

// observeDates is the refresh client's transport: it feeds every answer's
// Date header to a serverClock.
type observeDates struct {
	base http.RoundTripper
	sc   *serverClock
}

func (o observeDates) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(req)
	if err == nil {
		o.sc.observe(resp)
	}
	return resp, err
}
