package pigeon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// Mode is which client a Switch routes to.
type Mode = messages.Mode

// Modes.
const (
	ModeGhost      = messages.ModeGhost
	ModeAuthorized = messages.ModeAuthorized
)

// SwitchOption configures NewSwitch.
type SwitchOption interface{ applySwitch(*switchConfig) }

type switchOptionFunc func(*switchConfig)

func (f switchOptionFunc) applySwitch(c *switchConfig) { f(c) }

type switchConfig struct {
	initial      *Mode
	followAuth   bool
	keepInactive bool
}

// WithMode sets the initial mode. Zero value: ModeAuthorized when the
// authorized client has a current account, else ModeGhost.
func WithMode(m Mode) SwitchOption {
	return switchOptionFunc(func(c *switchConfig) { c.initial = &m })
}

// WithFollowAuth makes the switch follow the authorized client's
// auth-status stream: signed in → ModeAuthorized, signed out → ModeGhost.
// Zero value: the mode changes only with Use.
func WithFollowAuth() SwitchOption {
	return switchOptionFunc(func(c *switchConfig) { c.followAuth = true })
}

// WithKeepInactiveSocket keeps the inactive client's socket connected when
// the mode changes. Zero value: the inactive client's socket is
// disconnected.
func WithKeepInactiveSocket() SwitchOption {
	return switchOptionFunc(func(c *switchConfig) { c.keepInactive = true })
}

// Switch routes the AppPigeon API to the authorized or the ghost client,
// as its ModeSwitch actor says. Code holding a *Switch keeps working when
// the mode changes: each call goes to the client active when it starts, so
// requests in flight finish on the client they started on. Safe for
// concurrent use.
type Switch struct {
	a      *AuthorizedPigeon
	g      *GhostPigeon
	cfg    switchConfig
	system *actor.ActorSystem
	pid    *actor.PID
	mode   atomic.Int32
	closed atomic.Bool
	once   sync.Once
	unsubs ctxUnsubscribers // SubscribeMode streams bound to their ctx
	wg     sync.WaitGroup   // socket disconnects started by mode changes
	hc     *http.Client     // HTTPClient: routes each request to the active client
}

var _ AppPigeon = (*Switch)(nil)

// NewSwitch joins an authorized and a ghost client behind one AppPigeon.
// The Switch owns both from now on: its Close closes them.
func NewSwitch(a *AuthorizedPigeon, g *GhostPigeon, opts ...SwitchOption) (*Switch, error) {
	if a == nil || g == nil {
		return nil, errors.New("pigeon: NewSwitch needs both clients")
	}
	s := &Switch{a: a, g: g, system: a.system}
	ac := a.HTTPClient()
	s.hc = &http.Client{Transport: switchTransport{s}, Timeout: ac.Timeout, Jar: ac.Jar, CheckRedirect: ac.CheckRedirect}
	for _, o := range opts {
		o.applySwitch(&s.cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	initial := ModeGhost
	if s.cfg.initial != nil {
		initial = *s.cfg.initial
	} else if _, err := a.CurrentAuth(ctx); err == nil {
		initial = ModeAuthorized
	} else if !errors.Is(err, ErrNoAuth) {
		return nil, err
	}
	mopts := []actors.ModeOption{actors.WithInitialMode(initial), actors.WithModePublish(&s.mode), actors.WithModeHook(s.changed)}
	if s.cfg.followAuth {
		mopts = append(mopts, actors.WithFollowAuth(a.storePID))
	}
	s.mode.Store(int32(initial))
	s.pid = a.system.Root.Copy().WithGuardian(actor.NewOneForOneStrategy(10, time.Minute, actor.DefaultDecider)).
		SpawnPrefix(actors.NewModeSwitchProps(mopts...), "pigeon-mode")
	if _, err := actors.AskAs[*messages.ModeState](ctx, s.system, s.pid, &messages.GetMode{}); err != nil {
		return nil, fmt.Errorf("pigeon: starting mode switch: %w", err)
	}
	return s, nil
}

// changed runs on the ModeSwitch's mailbox after a change: it disconnects
// the inactive client's socket (in a goroutine: never block the actor).
func (s *Switch) changed(prev, next Mode) {
	if s.cfg.keepInactive || prev == next {
		return
	}
	var inactive AppPigeon = s.g
	if prev == ModeAuthorized {
		inactive = s.a
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = inactive.DisconnectSocket()
	}()
}

// Use makes m the active mode.
func (s *Switch) Use(ctx context.Context, m Mode) error {
	if s.closed.Load() {
		return ErrClosed
	}
	_, err := actors.AskAs[*messages.ModeState](ctx, s.system, s.pid, &messages.UseMode{Mode: m})
	return err
}

// Mode returns the active mode (no actor round trip).
func (s *Switch) Mode() Mode { return Mode(s.mode.Load()) }

// Active returns the client the active mode routes to.
func (s *Switch) Active() AppPigeon {
	if s.Mode() == ModeAuthorized {
		return s.a
	}
	return s.g
}

// Authorized returns the authorized client.
func (s *Switch) Authorized() *AuthorizedPigeon { return s.a }

// Ghost returns the ghost client.
func (s *Switch) Ghost() *GhostPigeon { return s.g }

// SubscribeMode returns the mode-change stream: the active mode first, then
// every change. 16 values are buffered; a slow reader loses the oldest and
// never blocks the switch. Closed when ctx ends or on Close.
func (s *Switch) SubscribeMode(ctx context.Context) (<-chan Mode, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	sub, err := actors.AskAs[*messages.ModeSubscription](ctx, s.system, s.pid, &messages.SubscribeMode{})
	if err != nil {
		return nil, err
	}
	s.unsubs.add(ctx, sub.ID, func() { s.system.Root.Send(s.pid, &messages.UnsubscribeMode{ID: sub.ID}) })
	return sub.C, nil
}

// Get sends a GET with the active client.
func (s *Switch) Get(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return s.Active().Get(ctx, path, opts...)
}

// Post sends a POST with the active client.
func (s *Switch) Post(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return s.Active().Post(ctx, path, body, opts...)
}

// Put sends a PUT with the active client.
func (s *Switch) Put(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return s.Active().Put(ctx, path, body, opts...)
}

// Patch sends a PATCH with the active client.
func (s *Switch) Patch(ctx context.Context, path string, body any, opts ...RequestOption) (*Response, error) {
	return s.Active().Patch(ctx, path, body, opts...)
}

// Delete sends a DELETE with the active client.
func (s *Switch) Delete(ctx context.Context, path string, opts ...RequestOption) (*Response, error) {
	return s.Active().Delete(ctx, path, opts...)
}

// SocketInit connects the active client's socket.
func (s *Switch) SocketInit(ctx context.Context, p SocketConnectParams) error {
	return s.Active().SocketInit(ctx, p)
}

// Listen listens on the active client's socket. The subscription belongs
// to that client: it ends if the mode change disconnects its socket.
func (s *Switch) Listen(ctx context.Context, event string) (*Subscription, error) {
	return s.Active().Listen(ctx, event)
}

// Emit emits on the active client's socket.
func (s *Switch) Emit(ctx context.Context, event string, data any) error {
	return s.Active().Emit(ctx, event, data)
}

// EmitWithAck emits on the active client's socket and waits for the
// server's ack.
func (s *Switch) EmitWithAck(ctx context.Context, event string, data any) (json.RawMessage, error) {
	return s.Active().EmitWithAck(ctx, event, data)
}

// UpdateHeaders changes the default headers of both clients, so a mode
// change keeps them; each client's live socket gets them as its own
// UpdateHeaders says.
func (s *Switch) UpdateHeaders(h map[string]string) {
	s.a.UpdateHeaders(h)
	s.g.UpdateHeaders(h)
}

// HTTPClient returns an *http.Client that sends each request through the
// client active when the request is made (its token, headers and refresh
// rules), for SDKs that take an *http.Client.
func (s *Switch) HTTPClient() *http.Client { return s.hc }

// switchTransport routes a request to the active client's transport.
type switchTransport struct{ s *Switch }

func (t switchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.s.closed.Load() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, ErrClosed
	}
	return t.s.Active().HTTPClient().Transport.RoundTrip(req)
}

// SubscribeSocketState returns the state stream of the active client's
// socket. Like a Listen subscription it belongs to that client: after a
// mode change it goes on reporting that client's socket (subscribe again
// for the new one).
func (s *Switch) SubscribeSocketState(ctx context.Context) (<-chan SocketStatus, error) {
	return s.Active().SubscribeSocketState(ctx)
}

// DisconnectSocket disconnects the active client's socket.
func (s *Switch) DisconnectSocket() error { return s.Active().DisconnectSocket() }

// Close stops the switch and closes both clients, as AppPigeon.Close says.
func (s *Switch) Close() error {
	err := ErrClosed
	s.once.Do(func() {
		s.closed.Store(true)
		s.unsubs.close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stopErr := actors.StopAndWait(ctx, s.system, s.pid)
		s.wg.Wait()
		err = errors.Join(stopErr, s.g.Close(), s.a.Close())
	})
	return err
}
