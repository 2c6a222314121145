package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/internal/nodepeer"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/transport/wire"
)

// socket.io v4 fidelity (docs/socket.md, rows F1–F8): each test runs one
// scenario against the npm socket.io 4.8 server (testdata/sioserver/
// server.js) twice, with the official socket.io-client as the control
// (testdata/sioserver/control.js prints what it saw) and with pigeon, and
// compares.

const sioDir = "testdata/sioserver"

// sioRef starts server.js and returns its base URL (http://127.0.0.1:port).
func sioRef(t *testing.T) string {
	t.Helper()
	port := nodepeer.Start(t, filepath.Join("testdata", "sioserver"), "socket.io")
	if _, err := os.Stat(filepath.Join(sioDir, "node_modules", "socket.io-client")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("socket.io-client missing in %s (npm ci): %v", sioDir, err)
		}
		t.Skipf("run `npm ci` in %s first: %v", sioDir, err)
	}
	return "http://127.0.0.1:" + port
}

// sioControl runs control.js scenario against base with socket.io-client
// and decodes the JSON line it prints into v.
func sioControl(t *testing.T, base, scenario string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "control.js", scenario, base)
	cmd.Dir = sioDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("control %s: %v\n%s", scenario, err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("control %s printed %q: %v", scenario, out, err)
	}
	t.Logf("socket.io-client (%s): %s", scenario, bytes.TrimSpace(out))
}

// sameJSON fails unless a and b are the same JSON value.
func sameJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: pigeon %q: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: control %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: pigeon %s, socket.io-client %s", what, got, want)
	}
}

// sioPigeon is one pigeon SocketConn against the reference server.
type sioPigeon struct {
	t      *testing.T
	sys    *actor.ActorSystem
	pid    *actor.PID
	all    *SocketListener // every event, adopted before the dial
	status *SocketStatusSubscription
	cfg    SocketConfig
}

func newSIOPigeon(t *testing.T, cfg SocketConfig) *sioPigeon {
	t.Helper()
	sys := NewSystem(zaptest.NewLogger(t), WithDeadLetterThrottle(time.Millisecond))
	t.Cleanup(sys.Shutdown)
	feed := NewSocketStatusFeed()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &sioPigeon{t: t, sys: sys, all: NewSocketListener("", 256), status: feed.Subscribe(ctx, 64)}
	cfg.Status = feed
	cfg.Listeners = append(cfg.Listeners, p.all)
	cfg.AckTimeout = 10 * time.Second
	cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	cfg.Rand = rand.New(rand.NewPCG(7, 7))
	cfg.Logger = zaptest.NewLogger(t)
	if cfg.InitialHeaders == nil && cfg.Headers == nil {
		cfg.InitialHeaders = http.Header{"Authorization": {"Bearer good-token"}}
	}
	p.cfg = cfg
	p.pid = sys.Root.Spawn(NewSocketConnProps(cfg))
	t.Cleanup(func() { _ = StopAndWait(context.Background(), sys, p.pid) })
	return p
}

// next returns the next event named name (others are skipped).
func (p *sioPigeon) next(name string) messages.SocketEvent {
	p.t.Helper()
	for {
		if ev := recvEvent(p.t, p.all); ev.Name == name {
			return ev
		}
	}
}

// until returns the statuses up to and including the first one ok accepts.
func (p *sioPigeon) until(ok func(messages.SocketStatus) bool) []messages.SocketStatus {
	p.t.Helper()
	var seen []messages.SocketStatus
	ctx := tctx(p.t)
	for {
		select {
		case st, open := <-p.status.C:
			if !open {
				p.t.Fatalf("status stream closed after %v", seen)
			}
			seen = append(seen, st)
			if ok(st) {
				return seen
			}
		case <-ctx.Done():
			p.t.Fatalf("status not reached; saw %v", seen)
		}
	}
}

func connected(st messages.SocketStatus) bool { return st.State == messages.SocketConnected }

func (p *sioPigeon) emit(m *messages.Emit) json.RawMessage {
	p.t.Helper()
	r, err := AskAs[*messages.EmitResult](tctx(p.t), p.sys, p.pid, m)
	if err != nil {
		p.t.Fatalf("emit %s: %v", m.Event, err)
	}
	return r.Ack
}

func args(t *testing.T, vals ...any) []messages.SocketArg {
	t.Helper()
	a, err := wire.ArgsOf(vals...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// F1 (issue 10 item 4): the namespace is joined, and a URL path naming one
// is an error instead of the main namespace.
func TestSocketIOFidelity_Namespace(t *testing.T) {
	base := sioRef(t)
	var ref struct{ Welcome json.RawMessage }
	sioControl(t, base, "namespace", &ref)

	p := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/", Codec: wire.SocketIO(wire.WithNamespace("chat"))})
	sameJSON(t, "welcome", p.next("welcome").Data, ref.Welcome)

	bad := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/chat"})
	_, err := AskAs[*messages.Connected](tctx(t), bad.sys, bad.pid, &messages.Connect{})
	if err == nil || !strings.Contains(err.Error(), `Namespace "/chat"`) {
		t.Fatalf("URL naming a namespace: %v", err)
	}
}

// F2 (item 5): several arguments in an emit, in its ack and in an event;
// the server's ack request is answered by the listener, with arguments.
func TestSocketIOFidelity_AcksAndArguments(t *testing.T) {
	base := sioRef(t)
	var ref struct{ Ack, Echo, Question, Answered json.RawMessage }
	sioControl(t, base, "acks", &ref)

	p := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/"})
	p.until(connected)
	sameJSON(t, "ack of a three-argument emit", p.emit(&messages.Emit{Event: "multi", Args: args(t, 1, "two", json.RawMessage(`{"three":3}`)), WantAck: true}), ref.Ack)
	sameJSON(t, "event with three arguments", p.next("multi-echo").Data, ref.Echo)
	p.emit(&messages.Emit{Event: "ask", Data: json.RawMessage(`5`)})
	q := p.next("question")
	if q.Ack == nil || len(q.Args) != 2 {
		t.Fatalf("question %+v: no ack function or not two arguments", q)
	}
	sameJSON(t, "question", q.Data, ref.Question)
	if err := q.Ack("yes", 42); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack("again"); !errors.Is(err, messages.ErrAlreadyAcked) {
		t.Fatalf("second ack: %v", err)
	}
	sameJSON(t, "what the server got in the ack", p.next("answered").Data, ref.Answered)
}

// F3 (item 6): []byte goes out as a binary attachment and the server's
// Buffers come in, top-level and nested, without ending the socket.
func TestSocketIOFidelity_Binary(t *testing.T) {
	base := sioRef(t)
	var raw struct {
		Back, Ack []int
		Meta      json.RawMessage
	}
	sioControl(t, base, "binary", &raw)
	var ref struct{ Back, Ack []byte }
	for _, b := range raw.Back {
		ref.Back = append(ref.Back, byte(b))
	}
	for _, b := range raw.Ack {
		ref.Ack = append(ref.Ack, byte(b))
	}

	p := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/"})
	p.until(connected)
	ack := p.emit(&messages.Emit{Event: "bin", Args: args(t, []byte{1, 2, 3}), WantAck: true})
	var ackBytes []byte
	if err := json.Unmarshal(ack, &ackBytes); err != nil || !bytes.Equal(ackBytes, ref.Ack) {
		t.Fatalf("binary ack %s (%v), socket.io-client %v", ack, err, ref.Ack)
	}
	ev := p.next("bin-back")
	if len(ev.Args) != 2 || !bytes.Equal(ev.Args[0].Binary, ref.Back) {
		t.Fatalf("bin-back %+v, socket.io-client %v", ev.Args, ref.Back)
	}
	sameJSON(t, "nested Buffer (base64)", ev.Args[1].JSON, raw.Meta)
	st, err := AskAs[*messages.State](tctx(t), p.sys, p.pid, &messages.GetState{})
	if err != nil || st.State != messages.SocketConnected {
		t.Fatalf("after binary events: %v %v", st, err)
	}
}

// F4 (item 7): the server's socket.disconnect() ends the socket; no
// reconnect, as with socket.io-client.
func TestSocketIOFidelity_ServerDisconnectIsTerminal(t *testing.T) {
	base := sioRef(t)
	var ref struct {
		Reason string
		Active bool
	}
	sioControl(t, base, "kick", &ref)
	if ref.Reason != "io server disconnect" || ref.Active {
		t.Fatalf("control: %+v", ref)
	}

	p := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/"})
	p.until(connected)
	p.emit(&messages.Emit{Event: "kick"})
	after := p.until(func(st messages.SocketStatus) bool { return st.State == messages.SocketClosed })
	for _, st := range after {
		if st.State == messages.SocketReconnecting || st.State == messages.SocketConnecting {
			t.Fatalf("pigeon reconnected after a server disconnect: %v", after)
		}
	}
	if err := after[len(after)-1].Err; !errors.Is(err, messages.ErrServerDisconnect) {
		t.Fatalf("closed with %v", err)
	}
	if err := waitClosedListener(t, p.all); !errors.Is(err, messages.ErrServerDisconnect) {
		t.Fatalf("listener ended with %v", err)
	}
}

// F5 (item 7): only an authentication error from the connect middleware
// fetches fresh credentials; "server busy" is reported as it is.
func TestSocketIOFidelity_OnlyAuthErrorsRefresh(t *testing.T) {
	base := sioRef(t)
	var ref struct {
		Message string
		Data    struct{ Code string }
		Active  bool
	}
	sioControl(t, base, "busy", &ref)

	for _, tc := range []struct {
		token     string
		fetches   int32
		rejection bool
	}{
		{"busy-token", 1, false},
		{"bad-token", 2, true},
	} {
		t.Run(tc.token, func(t *testing.T) {
			var fetches, refreshes atomic.Int32
			p := newSIOPigeon(t, SocketConfig{URL: base + "/socket.io/", FailFast: true, Headers: func(_ context.Context, rejected http.Header) (http.Header, error) {
				fetches.Add(1)
				if rejected != nil {
					refreshes.Add(1)
				}
				return http.Header{"Authorization": {"Bearer " + tc.token}}, nil
			}})
			_, err := AskAs[*messages.Connected](tctx(t), p.sys, p.pid, &messages.Connect{})
			var se *messages.SocketServerError
			if !errors.As(err, &se) {
				t.Fatalf("connect: %v", err)
			}
			if got := errors.As(err, new(*messages.SocketRejectedError)); got != tc.rejection {
				t.Fatalf("connect error %v: a credentials rejection = %v", err, got)
			}
			if fetches.Load() != tc.fetches || refreshes.Load() != tc.fetches-1 {
				t.Fatalf("%d header fetches (%d refreshes), want %d", fetches.Load(), refreshes.Load(), tc.fetches)
			}
			if tc.token == "busy-token" && (se.Message != ref.Message || se.Code != ref.Data.Code || ref.Active) {
				t.Fatalf("pigeon %+v, socket.io-client %+v", se, ref)
			}
		})
	}
}

// F6 (item 8): connection state recovery: pigeon offers pid and offset,
// reports Recovered, gets what was missed exactly once, without the
// offsets in the arguments.
func TestSocketIOFidelity_RecoveryDeliversMissedEventsOnce(t *testing.T) {
	base := sioRef(t)
	var ref struct {
		Missed     []json.RawMessage
		MissedArgs [][]json.RawMessage
		Recovered  bool
	}
	sioControl(t, base, "recover", &ref)
	if !ref.Recovered || len(ref.Missed) != 3 || len(ref.MissedArgs[0]) != 2 {
		t.Fatalf("control: %+v", ref) // socket.io-client sees [n, offset]
	}

	p := newSIOPigeon(t, SocketConfig{URL: base + "/rec/socket.io/", JoinID: "r"})
	p.until(connected)
	p.emit(&messages.Emit{Event: "drop", Data: json.RawMessage(`"r"`)})
	back := p.until(func(st messages.SocketStatus) bool { return connected(st) })
	if st := back[len(back)-1]; !st.Recovered {
		t.Fatalf("statuses %v: not recovered", back)
	}
	p.emit(&messages.Emit{Event: "after", Data: json.RawMessage(`"r"`)})
	var missed []json.RawMessage
	for {
		ev := recvEvent(t, p.all)
		if ev.Gap {
			t.Fatalf("gap event after a recovered session")
		}
		if ev.Name == "after" {
			break
		}
		if ev.Name == "missed" {
			if len(ev.Args) != 1 {
				t.Fatalf("missed event args %v: offset not stripped", ev.Args)
			}
			missed = append(missed, ev.Data)
		}
	}
	if len(missed) != len(ref.Missed) {
		t.Fatalf("missed events %s, socket.io-client %s", missed, ref.Missed)
	}
	for i := range missed {
		sameJSON(t, "missed event", missed[i], ref.Missed[i])
	}
}

// F7 (item 8): a session the server cannot recover gives listeners a gap
// event, as on pigeon.v1, and a Connected without Recovered.
func TestSocketIOFidelity_UnrecoverableSessionGivesAGap(t *testing.T) {
	base := sioRef(t)
	var ref struct{ Recovered bool }
	sioControl(t, base, "forget", &ref)
	if ref.Recovered {
		t.Fatal("control recovered a forgotten session")
	}

	p := newSIOPigeon(t, SocketConfig{URL: base + "/rec/socket.io/", JoinID: "r"})
	p.until(connected)
	p.emit(&messages.Emit{Event: "drop-forget"})
	back := p.until(func(st messages.SocketStatus) bool { return connected(st) })
	if back[len(back)-1].Recovered != ref.Recovered {
		t.Fatalf("statuses %v, socket.io-client recovered=%v", back, ref.Recovered)
	}
	if ev := p.next(messages.SocketGapEvent); !ev.Gap {
		t.Fatalf("gap event %+v", ev)
	}
	p.emit(&messages.Emit{Event: "after", Data: json.RawMessage(`"r"`)})
	p.next("after") // JoinID was joined again
}

// F8 (item 9): a new token reaches a stock server by a reconnect that
// carries the new auth payload and resumes the session (same id, rooms
// kept, Recovered), as socket.io-client does with auth + engine.close();
// an emit made meanwhile is buffered and answered on the new connection.
func TestSocketIOFidelity_TokenChangeReconnectsAndResumes(t *testing.T) {
	base := sioRef(t)
	type who struct {
		Token     string
		Recovered bool
		ID        string
	}
	var ref struct {
		First, Second who
		Recovered     bool
	}
	sioControl(t, base, "token", &ref)

	p := newSIOPigeon(t, SocketConfig{URL: base + "/rec/socket.io/", JoinID: "r"})
	p.until(connected)
	whoami := func() who {
		var w who
		if err := json.Unmarshal(p.emit(&messages.Emit{Event: "whoami", WantAck: true}), &w); err != nil {
			t.Fatal(err)
		}
		return w
	}
	first := whoami()
	// A header the auth payload does not carry is no reason to reconnect.
	st0, err := AskAs[*messages.State](tctx(t), p.sys, p.pid, &messages.GetState{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AskAs[*messages.HeadersUpdated](tctx(t), p.sys, p.pid, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer good-token"}, "X-Trace": {"1"}}}); err != nil {
		t.Fatal(err)
	}
	if st1, err := AskAs[*messages.State](tctx(t), p.sys, p.pid, &messages.GetState{}); err != nil || st1.Generation != st0.Generation || st1.State != messages.SocketConnected {
		t.Fatalf("after a header change outside the auth payload: %+v %v (was generation %d)", st1, err, st0.Generation)
	}
	if _, err := AskAs[*messages.HeadersUpdated](tctx(t), p.sys, p.pid, &messages.UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer good-token-2"}}}); err != nil {
		t.Fatal(err)
	}
	second := whoami() // sent on the new connection
	back := p.until(func(st messages.SocketStatus) bool { return connected(st) })
	if st := back[len(back)-1]; st.Recovered != ref.Recovered {
		t.Fatalf("statuses %v, socket.io-client recovered=%v", back, ref.Recovered)
	}
	if first.Token != ref.First.Token || second.Token != ref.Second.Token || second.Recovered != ref.Second.Recovered || (second.ID == first.ID) != (ref.Second.ID == ref.First.ID) {
		t.Fatalf("pigeon %+v → %+v, socket.io-client %+v → %+v", first, second, ref.First, ref.Second)
	}
	p.emit(&messages.Emit{Event: "after", Data: json.RawMessage(`"r"`)})
	p.next("after") // still in room r
}
