package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// DefaultHandshakeTimeout bounds the opening handshake when DialConfig
// leaves it zero.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultReadLimit is the largest frame accepted when DialConfig leaves
// ReadLimit zero (1 MiB).
const DefaultReadLimit = 1 << 20

// DialConfig configures Dial. The zero value is usable.
type DialConfig struct {
	// Header is sent with the handshake request. Zero value: none.
	Header http.Header
	// Subprotocols are offered in the handshake. Zero value: none.
	Subprotocols []string
	// HandshakeTimeout bounds the handshake. Zero value means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ReadLimit is the largest frame the connection accepts; a larger one
	// fails the read with websocket.ErrReadLimit and gorilla answers with
	// close 1009. Zero value means DefaultReadLimit; negative is an error.
	ReadLimit int64
	// NetDialContext dials the TCP connection. Zero value means net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSClientConfig configures wss:// connections (root CAs, client
	// certificates, ServerName). It is cloned per dial, never changed.
	// Zero value: crypto/tls defaults.
	TLSClientConfig *tls.Config
	// Proxy picks the HTTP proxy for a dial (nil URL: direct). Zero value
	// means http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
}

// HandshakeError is returned by Dial when the server answered the upgrade
// request with an HTTP status instead of switching protocols.
type HandshakeError struct {
	StatusCode int
	Err        error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("pigeon/ws: handshake rejected with HTTP %d: %v", e.StatusCode, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Dial opens a websocket to url honouring ctx and cfg, and sets the read
// limit before returning. On a rejected handshake the error is a
// *HandshakeError. Dial is safe for concurrent use.
func Dial(ctx context.Context, url string, cfg DialConfig) (*websocket.Conn, error) {
	if cfg.ReadLimit < 0 {
		return nil, errors.New("pigeon/ws: negative ReadLimit")
	}
	if cfg.HandshakeTimeout < 0 {
		return nil, errors.New("pigeon/ws: negative HandshakeTimeout")
	}
	d := websocket.Dialer{
		Proxy:            cfg.Proxy,
		HandshakeTimeout: cfg.HandshakeTimeout,
		Subprotocols:     cfg.Subprotocols,
		NetDialContext:   cfg.NetDialContext,
	}
	if d.Proxy == nil {
		d.Proxy = http.ProxyFromEnvironment
	}
	if cfg.TLSClientConfig != nil {
		d.TLSClientConfig = cfg.TLSClientConfig.Clone()
	}
	if d.HandshakeTimeout == 0 {
		d.HandshakeTimeout = DefaultHandshakeTimeout
	}
	// gorilla bounds the handshake by ctx's deadline but does not notice
	// ctx being cancelled while it waits for the server's answer: close
	// the connection then, so an abandoned dial ends at once.
	netDial := d.NetDialContext
	if netDial == nil {
		netDial = (&net.Dialer{}).DialContext
	}
	var stops []func() bool
	d.NetDialContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := netDial(dctx, network, addr)
		if err == nil {
			stops = append(stops, context.AfterFunc(ctx, func() { _ = c.Close() }))
		}
		return c, err
	}
	conn, resp, err := d.DialContext(ctx, url, cfg.Header.Clone())
	for _, stop := range stops {
		stop()
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			return nil, &HandshakeError{StatusCode: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("pigeon/ws: dial: %w", err)
	}
	limit := cfg.ReadLimit
	if limit == 0 {
		limit = DefaultReadLimit
	}
	conn.SetReadLimit(limit)
	return conn, nil
}
