package pigeon

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
)

// SocketConnectParams says where the socket connects. Token "" means the
// stored (current) token. A URL whose path contains "/socket.io" speaks
// socket.io v4; any other URL pigeon.v1. JoinID, when set, is joined after
// the handshake.
type SocketConnectParams struct {
	Token  string
	URL    string
	JoinID string
}

// Event is one socket event.
type Event struct {
	Name string
	Data json.RawMessage
}

// Subscription receives every event of one name. C is closed when the
// subscription ends; Err says why.
type Subscription struct {
	C     <-chan Event
	close func() error
	err   func() error
}

// Close ends the subscription. Safe to call more than once.
func (s *Subscription) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// Err says why C was closed (nil for Close or while open).
func (s *Subscription) Err() error {
	if s.err == nil {
		return nil
	}
	return s.err()
}

type socketConfig struct{}

func defaultSocketConfig() socketConfig { return socketConfig{} }

// socketEnv is what a client gives its socket: the current headers.
type socketEnv struct {
	headers func(ctx context.Context) (http.Header, error)
}

// socketHolder owns a client's socket connection (one at a time).
type socketHolder struct {
	env socketEnv
	mu  sync.Mutex
}

func newSocketHolder(env socketEnv) *socketHolder { return &socketHolder{env: env} }

func (h *socketHolder) headersChanged() {}
func (h *socketHolder) close()          {}

func (p *AuthorizedPigeon) socketEnv() socketEnv {
	return socketEnv{headers: func(ctx context.Context) (http.Header, error) {
		hdr := p.defaultHeaders().Clone()
		if hdr == nil {
			hdr = http.Header{}
		}
		s, err := p.tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		if s != nil {
			hdr.Set("Authorization", "Bearer "+string(s.AccessToken))
		}
		return hdr, nil
	}}
}

// SocketInit is not available yet.
func (p *AuthorizedPigeon) SocketInit(ctx context.Context, sp SocketConnectParams) error {
	return ErrSocketNotInitialized
}

// Listen is not available yet.
func (p *AuthorizedPigeon) Listen(ctx context.Context, event string) (*Subscription, error) {
	return nil, ErrSocketNotInitialized
}

// Emit is not available yet.
func (p *AuthorizedPigeon) Emit(ctx context.Context, event string, data any) error {
	return ErrSocketNotInitialized
}

// DisconnectSocket is not available yet.
func (p *AuthorizedPigeon) DisconnectSocket() error { return ErrSocketNotInitialized }
