package actors

// SocketConn: the hand-off from a connection's reader goroutine to the
// actor.

import (
	"sync"

	"github.com/apppigeon/pigeon/transport/wire"
)

// Bounds of a connection's inbox: past either, the reader waits until the
// drainer has taken what is queued, so a server faster than the actor
// is held back by TCP flow control, as when the reader ran the actor
// itself.
const (
	sockInboxFrames = 256
	sockInboxBytes  = 4 << 20
)

// sockInbox carries one connection's frames from the pump's reader to the
// actor without making the reader do the work: the reader only queues a
// frame (and its read error, last), and a drainer goroutine, started when
// the queue goes from empty to non-empty and ending when it is empty
// again, takes everything queued at once, decodes it (the built-in
// pigeon.v1 codec with no interceptor; any other codec decodes in the
// actor, which recovers its panics) and hands it to the actor as one
// message (sockInbound). Reading the next frames from the socket then
// overlaps decoding and dispatching the previous ones, and a burst costs
// one actor message instead of one per frame. Order is kept: frames in
// the order read, the read error after all of them.
type sockInbox struct {
	s      *socketConn
	gen    uint64
	decode wire.Codec // non-nil: the drainer decodes with it

	mu       sync.Mutex
	room     sync.Cond // signalled when the drainer takes the queue
	frames   []wire.Frame
	spare    []wire.Frame // the slice the drainer handed back, reused
	bytes    int
	lost     error
	hasLost  bool
	draining bool // a drainer goroutine runs (or is about to)
}

func newSockInbox(s *socketConn, gen uint64, decode wire.Codec) *sockInbox {
	in := &sockInbox{s: s, gen: gen, decode: decode}
	in.room.L = &in.mu
	return in
}

// sockInbound is what the drainer hands the actor: either raw frames
// (decoded by the actor) or the messages the drainer decoded from them,
// then err when a frame did not decode (the frames after it are
// dropped: the connection fails on it), then lost when the reader ended.
type sockInbound struct {
	sockOwned
	gen     uint64
	frames  []wire.Frame
	msgs    []wire.Msg
	nframes int // frames msgs came from (each one is server traffic)
	err     error
	lost    error
	hasLost bool
}

func (*sockInbound) IgnoreDeadLetterLogging() {}

// frame queues f (reader goroutine). It waits while the inbox is full.
func (in *sockInbox) frame(f wire.Frame) {
	in.mu.Lock()
	for len(in.frames) >= sockInboxFrames || in.bytes >= sockInboxBytes {
		in.room.Wait()
	}
	in.frames = append(in.frames, f)
	in.bytes += len(f.Data)
	in.kickLocked()
}

// readError queues the reader's final error (reader goroutine).
func (in *sockInbox) readError(err error) {
	in.mu.Lock()
	in.lost, in.hasLost = err, true
	in.kickLocked()
}

// kickLocked starts a drainer unless one runs, and unlocks in.mu.
func (in *sockInbox) kickLocked() {
	if in.draining {
		in.mu.Unlock()
		return
	}
	in.draining = true
	in.mu.Unlock()
	// Added on the reader goroutine, which sockStop outlives before it
	// waits for drains (closers waits for every pump).
	in.s.drains.Add(1)
	go in.drain()
}

// drain hands everything queued to the actor until the queue is empty.
func (in *sockInbox) drain() {
	defer in.s.drains.Done()
	s := in.s
	sys, self := s.sys, s.self
	for {
		in.mu.Lock()
		frames, lost, hasLost := in.frames, in.lost, in.hasLost
		if len(frames) == 0 && !hasLost {
			in.draining = false
			in.mu.Unlock()
			return
		}
		in.frames, in.spare = in.spare[:0], nil
		in.bytes, in.lost, in.hasLost = 0, nil, false
		in.room.Broadcast()
		in.mu.Unlock()

		m := &sockInbound{sockOwned: sockOwned{s}, gen: in.gen, lost: lost, hasLost: hasLost}
		if in.decode == nil {
			// The actor keeps these frames: the next batch gets a new
			// slice.
			m.frames = frames
			frames = nil
		} else {
			// A pigeon.v1 frame is one message: sized once.
			msgs := make([]wire.Msg, 0, len(frames))
			for _, f := range frames {
				ms, err := in.decode.Decode(f)
				m.nframes++
				if err != nil {
					m.err = err
					break
				}
				msgs = append(msgs, ms...)
			}
			// msgs goes to the actor, which may handle it later on
			// another goroutine (the mailbox was busy). frames is done
			// with: hand it back for the reader to fill again.
			m.msgs = msgs
			clear(frames)
			in.mu.Lock()
			if in.spare == nil && cap(frames) <= sockInboxFrames {
				in.spare = frames[:0]
			}
			in.mu.Unlock()
		}
		sys.Root.Send(self, m)
	}
}

// onInbound handles what a drainer of the live connection handed over.
func (s *socketConn) onInbound(m *sockInbound) {
	gen := s.gen
	live := func() bool { return gen == s.gen && s.link.pump != nil }
	for _, f := range m.frames {
		if !live() {
			return
		}
		s.onFrame(f)
		if s.panicked != nil {
			return // an interceptor panicked: Receive fails the socket
		}
	}
	if m.nframes > 0 && live() {
		s.onDecoded(m.msgs, nil)
		if m.err != nil && live() {
			s.onMsgs(nil, m.err)
		}
	}
	if m.hasLost && live() {
		s.onLost(m.lost)
	}
}
