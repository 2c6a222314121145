package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
)

// benchWS is a minimal pigeon.v1 server for the socket benchmarks: it
// answers init and join, echoes every emit as an event (plus its ack), and
// on an emit named "blast" sends N events as fast as it can. Each
// connection has one reader and one writer goroutine; Close stops them all.
type benchWS struct {
	srv *httptest.Server
	wg  sync.WaitGroup
	mu  sync.Mutex
	cs  map[*websocket.Conn]struct{}
}

func newBenchWS() *benchWS {
	s := &benchWS{cs: map[*websocket.Conn]struct{}{}}
	up := websocket.Upgrader{Subprotocols: []string{"pigeon.v1"}, CheckOrigin: func(*http.Request) bool { return true }}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.cs[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		defer s.wg.Done()
		s.serve(c)
	}))
	return s
}

func (s *benchWS) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

func (s *benchWS) close() {
	s.mu.Lock()
	for c := range s.cs {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.wg.Wait()
}

type benchEnv struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (s *benchWS) serve(c *websocket.Conn) {
	out := make(chan []byte, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range out {
			if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
				for range out {
				}
				return
			}
		}
	}()
	defer func() { close(out); <-done; _ = c.Close() }()
	seq := 0
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var e benchEnv
		if json.Unmarshal(data, &e) != nil {
			return
		}
		switch e.Type {
		case "init":
			out <- []byte(`{"type":"init_ack","id":"` + e.ID + `","payload":{"session":"b","pingIntervalMs":600000,"maxFrame":1048576}}`)
		case "join":
			out <- []byte(`{"type":"ack","id":"` + e.ID + `","payload":{"channel":"room","epoch":"e1","seq":0,"recovered":true}}`)
		case "update", "leave":
			out <- []byte(`{"type":"ack","id":"` + e.ID + `","payload":{}}`)
		case "ping":
			out <- []byte(`{"type":"pong","payload":` + string(e.Payload) + `}`)
		case "emit":
			var p struct {
				Event string          `json:"event"`
				Data  json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(e.Payload, &p)
			if p.Event == "blast" {
				var n int
				_ = json.Unmarshal(p.Data, &n)
				for i := 0; i < n; i++ {
					seq++
					out <- []byte(fmt.Sprintf(`{"type":"event","payload":{"channel":"room","event":"tick","epoch":"e1","seq":%d,"data":{"i":%d}}}`, seq, i))
				}
				if e.ID != "" { // pigeon keeps an emit until it is acked
					out <- []byte(`{"type":"ack","id":"` + e.ID + `","payload":{}}`)
				}
				continue
			}
			seq++
			out <- []byte(fmt.Sprintf(`{"type":"event","payload":{"channel":"room","event":%q,"epoch":"e1","seq":%d,"data":%s}}`, p.Event, seq, p.Data))
			if e.ID != "" {
				out <- []byte(`{"type":"ack","id":"` + e.ID + `","payload":{}}`)
			}
		}
	}
}

// rawClient is the baseline: plain gorilla with the same handshake.
type rawClient struct {
	c   *websocket.Conn
	ids int
}

func dialRaw(b *testing.B, url string) *rawClient {
	d := websocket.Dialer{Subprotocols: []string{"pigeon.v1"}}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	r := &rawClient{c: c}
	r.send(b, "init", `{"headers":{"Authorization":"Bearer x"}}`)
	r.expect(b, "init_ack")
	r.send(b, "join", `{"channel":"room"}`)
	r.expect(b, "ack")
	return r
}

func (r *rawClient) send(b *testing.B, typ, payload string) {
	r.ids++
	msg := fmt.Sprintf(`{"type":%q,"id":"r%d","payload":%s}`, typ, r.ids, payload)
	if err := r.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		b.Fatal(err)
	}
}

func (r *rawClient) next(b *testing.B) benchEnv {
	_, data, err := r.c.ReadMessage()
	if err != nil {
		b.Fatal(err)
	}
	var e benchEnv
	if err := json.Unmarshal(data, &e); err != nil {
		b.Fatal(err)
	}
	return e
}

func (r *rawClient) expect(b *testing.B, typ string) {
	if e := r.next(b); e.Type != typ {
		b.Fatalf("got %s, want %s", e.Type, typ)
	}
}

func newSocketClient(b *testing.B, url string) *pigeon.GhostPigeon {
	g, err := pigeon.NewGhost(pigeon.WithListenerQueue(2*eventChunk, pigeon.CloseSlowConsumer))
	if err != nil {
		b.Fatal(err)
	}
	g.SetAuthToken("x")
	if err := g.SocketInit(context.Background(), pigeon.SocketConnectParams{URL: url, JoinID: "room"}); err != nil {
		b.Fatal(err)
	}
	return g
}

// eventChunk is how many events the server blasts per request. Listener
// queues never block the actor (a full queue drops), so the benchmark asks
// for events in chunks no larger than the queue; the baseline does the
// same.
const eventChunk = 1024

// BenchmarkSocketEvents: server→client events delivered to one listener,
// through the SocketConn actor, against a plain gorilla read loop that
// decodes the same envelopes. ns/op is per event.
func BenchmarkSocketEvents(b *testing.B) {
	s := newBenchWS()
	defer s.close()
	b.Run("baseline=gorilla", func(b *testing.B) {
		r := dialRaw(b, s.url())
		defer r.c.Close()
		b.ResetTimer()
		for left := b.N; left > 0; left -= eventChunk {
			n := min(left, eventChunk)
			r.send(b, "emit", fmt.Sprintf(`{"event":"blast","channel":"room","data":%d}`, n))
			for got := 0; got < n; {
				switch e := r.next(b); e.Type {
				case "event":
					got++
				case "ack":
				default:
					b.Fatalf("got %s", e.Type)
				}
			}
		}
	})
	b.Run("pigeon=Listen", func(b *testing.B) { benchPigeonEvents(b, s, false) })
	// The same with a SubscribeSocketState subscriber: states are
	// published on transitions only, so the event path should not notice.
	b.Run("pigeon=Listen+SubscribeSocketState", func(b *testing.B) { benchPigeonEvents(b, s, true) })
}

// benchPigeonEvents is BenchmarkSocketEvents' pigeon side, with or
// without a state subscriber.
func benchPigeonEvents(b *testing.B, s *benchWS, stateSub bool) {
	g := newSocketClient(b, s.url())
	defer g.Close()
	ctx := context.Background()
	if stateSub {
		states, err := g.SubscribeSocketState(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st := <-states; st.State != pigeon.SocketConnected {
			b.Fatalf("socket %v", st.State)
		}
	}
	sub, err := g.Listen(ctx, "tick")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	readBlasts(b, g, sub)
	b.StopTimer()
}

// readBlasts asks g's server for b.N "blast" events in chunks of
// eventChunk and reads them from sub; it fails if any was dropped.
func readBlasts(b *testing.B, g pigeon.AppPigeon, sub *pigeon.Subscription) {
	ctx := context.Background()
	for left := b.N; left > 0; left -= eventChunk {
		n := min(left, eventChunk)
		if err := g.Emit(ctx, "blast", n); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if _, ok := <-sub.C; !ok {
				b.Fatal(sub.Err())
			}
		}
	}
	if d := sub.Dropped(); d != 0 {
		b.Fatalf("%d events dropped", d)
	}
}

// BenchmarkSocketRoundTrip: emit → echoed event, one at a time; reports
// the p50 latency against plain gorilla.
func BenchmarkSocketRoundTrip(b *testing.B) {
	s := newBenchWS()
	defer s.close()
	report := func(b *testing.B, lat []time.Duration) {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	}
	b.Run("baseline=gorilla", func(b *testing.B) { report(b, rawRoundTrips(b, s.url(), false)) })
	// The same protocol pigeon speaks since emits are exactly once: each
	// emit carries an emitId and an envelope id, and the client reads the
	// server's ack as well as the echo. What the guarantee costs on the
	// wire, without pigeon.
	b.Run("baseline=gorilla+acked", func(b *testing.B) { report(b, rawRoundTrips(b, s.url(), true)) })
	b.Run("pigeon=Emit+Listen", func(b *testing.B) {
		g := newSocketClient(b, s.url())
		defer g.Close()
		ctx := context.Background()
		sub, err := g.Listen(ctx, "echo")
		if err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := g.Emit(ctx, "echo", json.RawMessage(`{"n":1}`)); err != nil {
				b.Fatal(err)
			}
			<-sub.C
			lat = append(lat, time.Since(t0))
		}
		report(b, lat)
	})
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkSocketIdleMemory: heap per idle connection with 1000 connected
// (init acked, channel joined) connections: SocketConn actors in one actor
// system against plain gorilla connections. Both run against the same
// in-process server, so the server's per-connection memory is in both
// figures.
func BenchmarkSocketIdleMemory(b *testing.B) {
	const conns = 1000
	s := newBenchWS()
	defer s.close()
	b.Run("baseline=gorilla", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			before := heapInUse()
			cs := make([]*rawClient, conns)
			for j := range cs {
				cs[j] = dialRaw(b, s.url())
			}
			after := heapInUse()
			b.ReportMetric(float64(after-before)/conns, "B/conn")
			for _, c := range cs {
				_ = c.c.Close()
			}
		}
	})
	b.Run("pigeon=SocketConn", func(b *testing.B) {
		system := actors.NewSystem(nil)
		defer system.Shutdown()
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			before := heapInUse()
			pids := make([]*actor.PID, conns)
			for j := range pids {
				pids[j] = system.Root.Spawn(actors.NewSocketConnProps(actors.SocketConfig{
					URL: s.url(), JoinID: "room", InitialHeaders: http.Header{"Authorization": {"Bearer x"}},
				}))
				if _, err := actors.AskAs[*messages.Connected](ctx, system, pids[j], &messages.Connect{}); err != nil {
					b.Fatal(err)
				}
			}
			after := heapInUse()
			b.ReportMetric(float64(after-before)/conns, "B/conn")
			for _, pid := range pids {
				_, _ = actors.Ask(ctx, system, pid, &messages.Disconnect{})
				_ = actors.StopAndWait(ctx, system, pid)
			}
		}
	})
}

// rawRoundTrips is BenchmarkSocketRoundTrip's gorilla side: b.N emits, each
// timed until its echo arrives. acked: each emit has an id and an emitId,
// and the server's ack is read (untimed, after the echo) before the next.
func rawRoundTrips(b *testing.B, url string, acked bool) []time.Duration {
	r := dialRaw(b, url)
	defer r.c.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		msg := `{"type":"emit","payload":{"event":"echo","channel":"room","data":{"n":1}}}`
		id := ""
		if acked {
			r.ids++
			id = strconv.Itoa(r.ids)
			msg = `{"type":"emit","id":"` + id + `","payload":{"event":"echo","channel":"room","data":{"n":1},"emitId":"raw-` + id + `"}}`
		}
		if err := r.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			b.Fatal(err)
		}
		r.expect(b, "event")
		lat = append(lat, time.Since(t0))
		if acked {
			if e := r.next(b); e.Type != "ack" || e.ID != id {
				b.Fatalf("got %s %s, want the ack of %s", e.Type, e.ID, id)
			}
		}
	}
	b.StopTimer()
	return lat
}
