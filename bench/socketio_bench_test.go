package bench

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/internal/nodepeer"
)

// BenchmarkSocketIOEvents: server→client socket.io events from the npm
// socket.io 4.8 server (actors/testdata/sioserver/server.js, "blast"), read
// by pigeon (a GhostPigeon listening) and, as a reference point, by the
// official socket.io-client under node (control.js blast) reading the same
// server in the same run. Both ask for events in chunks of eventChunk and
// report ns/event; the server is the same node process, so its cost is in
// both figures.
func BenchmarkSocketIOEvents(b *testing.B) {
	dir := filepath.Join("..", "actors", "testdata", "sioserver")
	base := "http://127.0.0.1:" + nodepeer.Start(b, dir, "socket.io")
	b.Run("reference=socket.io-client", func(b *testing.B) {
		n := max(b.N, 100*eventChunk) // node needs its JIT warm: never fewer than ~100k events
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "control.js", "blast", base, strconv.Itoa(n))
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("control.js blast: %v", err)
		}
		var r struct{ NsPerEvent float64 }
		if err := json.Unmarshal(out, &r); err != nil {
			b.Fatalf("control.js printed %q: %v", out, err)
		}
		b.ReportMetric(r.NsPerEvent, "ns/event")
	})
	b.Run("pigeon=Listen", func(b *testing.B) {
		g, err := pigeon.NewGhost(pigeon.WithInMemoryStore(), pigeon.WithBaseURL(base), pigeon.WithListenerQueue(2*eventChunk, pigeon.CloseSlowConsumer))
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		g.SetAuthToken("good-token")
		ctx := context.Background()
		if err := g.SocketInit(ctx, pigeon.SocketConnectParams{URL: base + "/socket.io/"}); err != nil {
			b.Fatal(err)
		}
		sub, err := g.Listen(ctx, "tick")
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		t0 := time.Now()
		readBlasts(b, g, sub)
		b.ReportMetric(float64(time.Since(t0).Nanoseconds())/float64(b.N), "ns/event")
	})
}
