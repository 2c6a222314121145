package ws

import (
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/apppigeon/pigeon/transport/wire"
)

// Pump defaults.
const (
	DefaultWriteTimeout = 10 * time.Second
	DefaultQueueSize    = 256
)

// Pump errors.
var (
	// ErrQueueFull: the writer's bounded queue has no room; nothing was
	// queued.
	ErrQueueFull = errors.New("pigeon/ws: write queue full")
	// ErrPumpClosed: the pump is closed or closing.
	ErrPumpClosed = errors.New("pigeon/ws: connection closed")
)

// PumpConfig configures NewPump.
type PumpConfig struct {
	// OnFrame receives every data frame, in order, on the reader
	// goroutine. It must not block for long (pigeon's actor just forwards
	// the frame as a message). Required.
	OnFrame func(wire.Frame)
	// OnReadError is called exactly once, on the reader goroutine, with
	// the first read error (a *websocket.CloseError for a close frame); the
	// reader then exits. After a write failure it receives the write error,
	// unless the server's close frame arrived: that *websocket.CloseError
	// wins, so the close code decides what happens next.
	// Zero value: ignored.
	OnReadError func(error)
	// WriteTimeout is the deadline of every write. Zero value means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// QueueSize bounds the frames waiting for the writer; Send fails with
	// ErrQueueFull beyond it. Zero value means DefaultQueueSize.
	QueueSize int
}

type pumpItem struct {
	frame     wire.Frame
	close     bool
	closeCode int
	closeText string
}

// Pump owns a connection's reader and writer goroutines. Send and
// CloseGraceful never block; Close is idempotent, safe for concurrent use
// with everything else, and returns once both goroutines have exited. All
// methods are safe for concurrent use.
type Pump struct {
	conn *websocket.Conn
	cfg  PumpConfig
	// mu guards q and closing. q holds at most cfg.QueueSize items; it is
	// a slice rather than a buffered channel so an idle connection holds
	// no queue memory (a channel of 256 items took 18 KB per connection).
	mu      sync.Mutex
	q       []pumpItem
	closing bool          // a close item is queued: nothing more is taken
	wake    chan struct{} // capacity 1: the writer has items to take
	done    chan struct{} // closed by closeConn
	once    sync.Once
	wg      sync.WaitGroup
	errMu   sync.Mutex
	writeEr error
}

// NewPump starts the reader and writer goroutines of conn. conn must not
// be used by anyone else afterwards.
func NewPump(conn *websocket.Conn, cfg PumpConfig) *Pump {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	p := &Pump{conn: conn, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.wg.Add(2)
	go p.readLoop()
	go p.writeLoop()
	return p
}

// Send queues f for the writer. It fails at once with ErrQueueFull or
// ErrPumpClosed.
func (p *Pump) Send(f wire.Frame) error {
	p.mu.Lock()
	switch {
	case p.closing || p.isDone():
		p.mu.Unlock()
		return ErrPumpClosed
	case len(p.q) >= p.cfg.QueueSize:
		p.mu.Unlock()
		return ErrQueueFull
	}
	p.q = append(p.q, pumpItem{frame: f})
	p.mu.Unlock()
	p.signal()
	return nil
}

func (p *Pump) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal wakes the writer without blocking.
func (p *Pump) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// CloseGraceful queues a close frame with code and text behind the frames
// already queued; the writer sends it and then closes the connection. When
// the queue is full the connection is closed at once. It does not wait;
// call Close to wait.
func (p *Pump) CloseGraceful(code int, text string) {
	p.mu.Lock()
	switch {
	case p.closing || p.isDone():
		p.mu.Unlock()
		return
	case len(p.q) >= p.cfg.QueueSize:
		p.mu.Unlock()
		p.closeConn()
		return
	}
	p.q = append(p.q, pumpItem{close: true, closeCode: code, closeText: text})
	p.closing = true
	p.mu.Unlock()
	p.signal()
}

// Close closes the connection (exactly once over the pump's life) and
// waits for the reader and writer goroutines.
func (p *Pump) Close() {
	p.closeConn()
	p.wg.Wait()
}

// Abort closes the connection (exactly once over the pump's life) without
// waiting for the goroutines; call Close to wait. Safe to call from the
// OnFrame and OnReadError callbacks.
func (p *Pump) Abort() { p.closeConn() }

// Done is closed once the connection has been closed.
func (p *Pump) Done() <-chan struct{} { return p.done }

func (p *Pump) closeConn() {
	p.once.Do(func() {
		close(p.done)
		_ = p.conn.Close()
	})
}

func (p *Pump) readLoop() {
	defer p.wg.Done()
	for {
		t, data, err := p.conn.ReadMessage()
		if err != nil {
			p.closeConn()
			p.errMu.Lock()
			var ce *websocket.CloseError
			if p.writeEr != nil && !errors.As(err, &ce) {
				// The write failure is why the read failed. A close
				// frame, though, is the server's word on why the
				// connection ended (a write racing it only fails with
				// websocket.ErrCloseSent): it wins.
				err = p.writeEr
			}
			p.errMu.Unlock()
			if p.cfg.OnReadError != nil {
				p.cfg.OnReadError(err)
			}
			return
		}
		p.cfg.OnFrame(wire.Frame{Type: wire.MessageType(t), Data: data})
	}
}

func (p *Pump) writeLoop() {
	defer p.wg.Done()
	var batch []pumpItem
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
		}
		// Take everything queued at once and hand the queue the spare
		// slice (the two swap, so a busy connection allocates neither).
		p.mu.Lock()
		batch, p.q = p.q, batch[:0]
		p.mu.Unlock()
		for i, it := range batch {
			batch[i] = pumpItem{} // the frame's memory is the writer's no more
			if p.isDone() {
				return
			}
			deadline := time.Now().Add(p.cfg.WriteTimeout)
			var err error
			if it.close {
				err = p.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(it.closeCode, it.closeText), deadline)
			} else {
				if err = p.conn.SetWriteDeadline(deadline); err == nil {
					err = p.conn.WriteMessage(int(it.frame.Type), it.frame.Data)
				}
			}
			if err != nil {
				p.errMu.Lock()
				p.writeEr = err
				p.errMu.Unlock()
			}
			if err != nil || it.close {
				p.closeConn()
				return
			}
		}
	}
}
