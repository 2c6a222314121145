package actors

import (
	"fmt"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon/messages"
)

// ModeOption configures NewModeSwitchProps.
type ModeOption interface{ applyMode(*modeConfig) }

type modeOptionFunc func(*modeConfig)

func (f modeOptionFunc) applyMode(c *modeConfig) { f(c) }

type modeConfig struct {
	initial   messages.Mode
	authStore *actor.PID
	publish   *atomic.Int32
	onChange  func(prev, next messages.Mode)
}

// WithInitialMode sets the mode at start. Zero value: ModeGhost (or, when
// following an AuthStore, the mode its current status implies).
func WithInitialMode(m messages.Mode) ModeOption {
	return modeOptionFunc(func(c *modeConfig) { c.initial = m })
}

// WithFollowAuth makes the switch follow the auth-status stream of the
// AuthStore at pid: Authenticated → ModeAuthorized, Unauthenticated →
// ModeGhost. UseMode still works in between. Zero value: not following.
func WithFollowAuth(pid *actor.PID) ModeOption {
	return modeOptionFunc(func(c *modeConfig) { c.authStore = pid })
}

// WithModePublish makes the switch store the active mode into p before it
// acknowledges or announces a change, for lock-free readers. Zero value:
// nothing is published.
func WithModePublish(p *atomic.Int32) ModeOption {
	return modeOptionFunc(func(c *modeConfig) { c.publish = p })
}

// WithModeHook calls f (from the actor's mailbox: it must not block) after
// every change, before subscribers hear of it. Zero value: none.
func WithModeHook(f func(prev, next messages.Mode)) ModeOption {
	return modeOptionFunc(func(c *modeConfig) { c.onChange = f })
}

// NewModeSwitchProps returns the Props of a ModeSwitch actor: the owner of
// which client (ghost or authorized) is active. Protocol: UseMode, GetMode,
// SubscribeMode, UnsubscribeMode of package messages.
func NewModeSwitchProps(opts ...ModeOption) *actor.Props {
	var cfg modeConfig
	for _, o := range opts {
		o.applyMode(&cfg)
	}
	return actor.PropsFromProducer(func() actor.Actor { return &modeSwitch{cfg: cfg} })
}

type modeSub struct {
	pid *actor.PID
	ch  chan messages.Mode
}

type modeSwitch struct {
	cfg     modeConfig
	mode    messages.Mode
	subs    map[uint64]*modeSub
	nextSub uint64
	authSub uint64
	// The auth stream's first value is the status at subscription time,
	// not a change: it sets the mode only if no UseMode came first. Later
	// values set it when the state really changes.
	authSeen  bool
	authState messages.AuthState
	used      bool
}

func (m *modeSwitch) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *actor.Started:
		m.subs = map[uint64]*modeSub{}
		m.authSeen, m.used = false, false
		m.mode = m.cfg.initial
		m.publish()
		if m.cfg.authStore != nil {
			c.Request(m.cfg.authStore, &messages.SubscribeAuth{PID: c.Self()})
		}
	case *actor.Stopping, *actor.Restarting:
		for id, s := range m.subs {
			if s.ch != nil {
				close(s.ch)
			}
			delete(m.subs, id)
		}
		if m.authSub != 0 {
			c.Send(m.cfg.authStore, &messages.UnsubscribeAuth{ID: m.authSub})
		}
	case *messages.AuthSubscription:
		m.authSub = msg.ID
	case *messages.AuthChanged:
		first, changed := !m.authSeen, msg.Status.State != m.authState
		m.authSeen, m.authState = true, msg.Status.State
		if first && m.used || !first && !changed {
			return
		}
		if msg.Status.State == messages.Authenticated {
			m.set(c, messages.ModeAuthorized)
		} else {
			m.set(c, messages.ModeGhost)
		}
	case *messages.UseMode:
		if msg.Mode != messages.ModeGhost && msg.Mode != messages.ModeAuthorized {
			c.Respond(fail(fmt.Errorf("pigeon/actors: unknown mode %d", msg.Mode)))
			return
		}
		m.used = true
		m.set(c, msg.Mode)
		c.Respond(&messages.ModeState{Mode: m.mode})
	case *messages.GetMode:
		c.Respond(&messages.ModeState{Mode: m.mode})
	case *messages.SubscribeMode:
		m.nextSub++
		s := &modeSub{pid: msg.PID}
		if msg.PID == nil {
			n := msg.Buffer
			if n <= 0 {
				n = 16
			}
			s.ch = make(chan messages.Mode, n)
		}
		m.subs[m.nextSub] = s
		m.deliver(c, s, m.mode, m.mode)
		c.Respond(&messages.ModeSubscription{ID: m.nextSub, C: s.ch})
	case *messages.UnsubscribeMode:
		if s := m.subs[msg.ID]; s != nil {
			if s.ch != nil {
				close(s.ch)
			}
			delete(m.subs, msg.ID)
		}
		if c.Sender() != nil {
			c.Respond(&messages.Unsubscribed{})
		}
	default:
		if c.Sender() != nil {
			c.Respond(fail(fmt.Errorf("pigeon/actors: mode switch: unknown message %T", msg)))
		}
	}
}

func (m *modeSwitch) publish() {
	if m.cfg.publish != nil {
		m.cfg.publish.Store(int32(m.mode))
	}
}

func (m *modeSwitch) set(c actor.Context, next messages.Mode) {
	if next == m.mode {
		return
	}
	prev := m.mode
	m.mode = next
	m.publish()
	if m.cfg.onChange != nil {
		m.cfg.onChange(prev, next)
	}
	for _, s := range m.subs {
		m.deliver(c, s, prev, next)
	}
}

func (m *modeSwitch) deliver(c actor.Context, s *modeSub, prev, next messages.Mode) {
	if s.pid != nil {
		c.Send(s.pid, &messages.ModeChanged{Prev: prev, Mode: next})
		return
	}
	offerNewest(s.ch, next)
}
