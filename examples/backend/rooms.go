package backend

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// room is one channel: its epoch, sequence, bounded history and members.
// Every field is guarded by mu. Frames are queued to members under mu, so
// every member sees a room's events in sequence order, and a join's ack and
// replay are never interleaved with new events.
type room struct {
	name    string
	mu      sync.Mutex
	epoch   string
	seq     uint64
	hist    []histEntry // contiguous seqs, oldest first, at most historySize
	members map[*wsConn]struct{}
}

type histEntry struct {
	seq   uint64
	event string
	data  json.RawMessage
	frame []byte
}

func newEpoch() string { return randomString(6) }

// room returns the named room, creating it.
func (b *Backend) room(name string) *room {
	b.roomMu.Lock()
	defer b.roomMu.Unlock()
	r, ok := b.rooms[name]
	if !ok {
		r = &room{name: name, epoch: newEpoch(), members: make(map[*wsConn]struct{})}
		b.rooms[name] = r
	}
	return r
}

func (b *Backend) existingRoom(name string) *room {
	b.roomMu.Lock()
	defer b.roomMu.Unlock()
	return b.rooms[name]
}

// publish appends an event whose data build makes from its seq, and queues
// it to every member. It returns the event's position.
func (b *Backend) publish(r *room, event string, build func(seq uint64) (json.RawMessage, error)) (Position, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := r.seq + 1
	data, err := build(seq)
	if err != nil {
		return Position{}, err
	}
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	frame := encodeFrame(outFrame{Type: TypeEvent, Payload: eventPayload{Channel: r.name, Event: event, Epoch: r.epoch, Seq: seq, Data: data}})
	r.seq = seq
	if len(r.hist) >= b.cfg.historySize {
		r.hist = r.hist[len(r.hist)-b.cfg.historySize+1:]
	}
	r.hist = append(r.hist, histEntry{seq: seq, event: event, data: data, frame: frame})
	for m := range r.members {
		if !m.isClosing() {
			b.stats.eventsSent.Add(1) // counted before the client can see it
			m.enqueue(frame)
		}
	}
	return Position{Epoch: r.epoch, Seq: seq}, nil
}

// join adds c to r and queues the ack (with id) and, when recovered, the
// missed events.
func (b *Backend) join(r *room, c *wsConn, id string, since *Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members[c] = struct{}{}
	ack := joinAckPayload{Channel: r.name, Epoch: r.epoch, Seq: r.seq}
	var replay []histEntry
	if since != nil && since.Epoch == r.epoch && since.Seq <= r.seq {
		oldest := r.seq + 1
		if len(r.hist) > 0 {
			oldest = r.hist[0].seq
		}
		if since.Seq+1 >= oldest {
			ack.Recovered = true
			ack.Seq = since.Seq
			i := sort.Search(len(r.hist), func(i int) bool { return r.hist[i].seq > since.Seq })
			replay = r.hist[i:]
		}
	}
	c.enqueue(encodeFrame(outFrame{Type: TypeAck, ID: id, Payload: ack}))
	for _, e := range replay {
		if !c.isClosing() {
			b.stats.eventsSent.Add(1)
			b.stats.replayed.Add(1)
			c.enqueue(e.frame)
		}
	}
}

func (r *room) leave(c *wsConn) {
	r.mu.Lock()
	delete(r.members, c)
	r.mu.Unlock()
}

// since returns the history entries with seq > after, for event (all events
// when event is "").
func (r *room) since(after uint64, event string) (string, []histEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.hist), func(i int) bool { return r.hist[i].seq > after })
	out := make([]histEntry, 0, len(r.hist)-i)
	for _, e := range r.hist[i:] {
		if event == "" || e.event == event {
			out = append(out, e)
		}
	}
	return r.epoch, out
}

// validChannel reports whether name is an acceptable channel name: 1–128
// bytes of printable ASCII without spaces.
func validChannel(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return false
		}
	}
	return true
}

// mayJoin reports whether p may be in channel: `user:<uid>` only for that
// user; every other channel (chat:universal included) for anyone
// authenticated, ghosts included.
func mayJoin(p principal, channel string) bool {
	if uid, ok := strings.CutPrefix(channel, "user:"); ok {
		return !p.ghost && p.id == uid
	}
	return true
}

// Publish appends a server-originated event to channel (creating the room)
// and delivers it to every member, exactly as an `emit` would. data is
// encoded with encoding/json (a json.RawMessage is used as is). It returns
// the event's position. Errors: ErrInvalidInput for a bad channel name, an
// empty event or data that cannot be encoded. Safe for concurrent use.
func (b *Backend) Publish(channel, event string, data any) (Position, error) {
	if !validChannel(channel) || event == "" {
		return Position{}, fmt.Errorf("%w: bad channel %q or empty event", ErrInvalidInput, channel)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return b.publish(b.room(channel), event, func(uint64) (json.RawMessage, error) { return raw, nil })
}

// RoomPosition returns the current position (epoch and last seq) of a room,
// and false if no one has joined or published to it yet. Safe for concurrent
// use.
func (b *Backend) RoomPosition(channel string) (Position, bool) {
	r := b.existingRoom(channel)
	if r == nil {
		return Position{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, true
}

// RestartRoom simulates a restart of one room: a new epoch, seq back to 0,
// history dropped (members stay joined). A later `join` with a `since` from
// the old epoch answers recovered:false. Error: ErrUnknownRoom. Safe for
// concurrent use.
func (b *Backend) RestartRoom(channel string) error {
	r := b.existingRoom(channel)
	if r == nil {
		return fmt.Errorf("%w: %q", ErrUnknownRoom, channel)
	}
	r.restart()
	return nil
}

// RestartRooms restarts every room as RestartRoom does (use it with
// CloseAllSockets(4004, ...) to simulate a whole server restart). Safe for
// concurrent use.
func (b *Backend) RestartRooms() {
	b.roomMu.Lock()
	rooms := make([]*room, 0, len(b.rooms))
	for _, r := range b.rooms {
		rooms = append(rooms, r)
	}
	b.roomMu.Unlock()
	for _, r := range rooms {
		r.restart()
	}
}

func (r *room) restart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.epoch
	for r.epoch == old {
		r.epoch = newEpoch()
	}
	r.seq = 0
	r.hist = nil
}
