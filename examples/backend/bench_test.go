package backend

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkEcho measures GET /echo with a bearer token over loopback.
func BenchmarkEcho(b *testing.B) {
	be, srv := newServer(b)
	tok, _ := be.IssueTokens("bench")
	req, _ := http.NewRequest("GET", srv.URL+"/echo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	client := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkEmitRoundTrip measures one emit → event + ack on one websocket.
func BenchmarkEmitRoundTrip(b *testing.B) {
	be, srv := newServer(b)
	tok, _ := be.IssueTokens("bench")
	c := dial(b, srv)
	c.init(tok.AccessToken)
	c.join("j", "room:bench", nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := itoa(uint64(i))
		c.send(TypeEmit, id, map[string]any{"event": "m", "channel": "room:bench", "data": i})
		c.expect(TypeEvent, "")
		c.expect(TypeAck, id)
	}
}
