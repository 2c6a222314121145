package actors

import (
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// inlineMailbox is an unbounded mailbox that saves a goroutine hand-off on
// the common path: a sender that finds the mailbox idle runs the actor for
// one user message on its own goroutine; anything else (more queued
// messages, any system message, a suspended mailbox) is processed on a
// goroutine started by the props' dispatcher, exactly like protoactor's
// default mailbox.
//
// Rules that keep this safe (the SocketConn actor follows them):
//   - a user message handler never blocks and never waits for a goroutine
//     (it may run on the pump's reader, a dial goroutine, a timer or the
//     caller of Ask);
//   - system messages (Stop, and so the Stopping handler that waits for the
//     actor's goroutines; Restart; Watch ...) never run inline, so the
//     goroutine that waits is never one it waits for;
//   - a sender runs at most one message, so no sender is held up by other
//     senders' traffic.
//
// MessageBatch is not unpacked (pigeon sends none).
type inlineMailbox struct {
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher

	mu        sync.Mutex
	user      []any // FIFO from uhead
	uhead     int
	sys       []any
	running   bool // a goroutine runs (or is about to run) messages
	suspended bool
}

func newInlineMailbox() actor.Mailbox { return &inlineMailbox{} }

func (m *inlineMailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	if m.uhead > 0 && len(m.user) == cap(m.user) {
		n := copy(m.user, m.user[m.uhead:])
		clear(m.user[n:])
		m.user = m.user[:n]
		m.uhead = 0
	}
	m.user = append(m.user, msg)
	if m.running {
		m.mu.Unlock()
		return
	}
	m.running = true
	inline := !m.suspended && len(m.sys) == 0
	m.mu.Unlock()
	if !inline {
		m.dispatcher.Schedule(m.process)
		return
	}
	m.invokeUser(m.popUser())
	m.mu.Lock()
	if !m.hasWorkLocked() {
		m.running = false
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.dispatcher.Schedule(m.process)
}

func (m *inlineMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys = append(m.sys, msg)
	if m.running {
		m.mu.Unlock()
		return
	}
	m.running = true
	m.mu.Unlock()
	m.dispatcher.Schedule(m.process)
}

func (m *inlineMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	m.dispatcher = dispatcher
}

func (m *inlineMailbox) Start() {}

func (m *inlineMailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user) - m.uhead
}

// hasWorkLocked reports whether a runner has something to do now.
func (m *inlineMailbox) hasWorkLocked() bool {
	return len(m.sys) > 0 || (!m.suspended && len(m.user) > m.uhead)
}

// popUser removes the oldest user message; the caller holds the running
// flag and knows there is one.
func (m *inlineMailbox) popUser() any {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg := m.user[m.uhead]
	m.user[m.uhead] = nil
	m.uhead++
	if m.uhead == len(m.user) {
		m.user, m.uhead = m.user[:0], 0
	}
	return msg
}

// process runs messages until there are none left (system messages first),
// on a dispatcher goroutine.
func (m *inlineMailbox) process() {
	throughput := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if throughput > 0 && i >= throughput {
			i = 0
			runtime.Gosched() // like protoactor's default mailbox
		}
		m.mu.Lock()
		if len(m.sys) > 0 {
			msg := m.sys[0]
			m.sys[0] = nil
			m.sys = m.sys[1:]
			if len(m.sys) == 0 {
				m.sys = nil
			}
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended = true
				m.mu.Unlock()
			case *actor.ResumeMailbox:
				m.suspended = false
				m.mu.Unlock()
			default:
				m.mu.Unlock()
				m.invokeSystem(msg)
			}
			continue
		}
		if m.suspended || len(m.user) == m.uhead {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		m.invokeUser(m.popUser())
	}
}

func (m *inlineMailbox) invokeUser(msg any) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	m.invoker.InvokeUserMessage(msg)
}

func (m *inlineMailbox) invokeSystem(msg any) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	m.invoker.InvokeSystemMessage(msg)
}
