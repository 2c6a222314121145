package pigeon_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/apppigeon/pigeon"
)

// bodyServer answers /chunked/<n> with n bytes of unknown length and
// /sized/<n> with n bytes and a Content-Length; /short announces 1,000
// bytes and sends 10.
func bodyServer(t *testing.T) *httptest.Server {
	t.Helper()
	block := bytes.Repeat([]byte("x"), 32<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		n, _ := strconv.Atoi(parts[len(parts)-1])
		switch parts[1] {
		case "sized":
			w.Header().Set("Content-Length", strconv.Itoa(n))
		case "short":
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(block[:10])
			return
		}
		for n > 0 {
			k, err := w.Write(block[:min(n, len(block))])
			if err != nil {
				return
			}
			n -= k
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func bodyClient(t *testing.T, srv *httptest.Server, max int64) *pigeon.GhostPigeon {
	t.Helper()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL), pigeon.WithMaxResponseBytes(max))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// Bodies within the limit arrive whole, of known or unknown length; a
// body that ends before its announced length is an error that says so.
func TestResponseBody_WithinTheLimit(t *testing.T) {
	srv := bodyServer(t)
	g := bodyClient(t, srv, 1<<20)
	ctx := ctxT(t)
	for _, path := range []string{"/sized/0", "/sized/1048576", "/chunked/1", "/chunked/100000", "/chunked/1048576"} {
		r, err := g.Get(ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want, _ := strconv.Atoi(path[strings.LastIndex(path, "/")+1:])
		if len(r.Body) != want || bytes.Count(r.Body, []byte("x")) != want {
			t.Fatalf("%s: got %d bytes, want %d", path, len(r.Body), want)
		}
	}
	if _, err := g.Get(ctx, "/short/0"); err == nil || !strings.Contains(err.Error(), "10 of 1000") {
		t.Fatalf("short body: %v, want an error naming 10 of 1000 bytes", err)
	}
}

// Issue 13 item 11: a body over the limit is refused, and refusing it
// costs no more than the limit: bytes allocated while reading a 64 MiB
// body against a 4 MiB limit stay under 1.5× the limit (io.ReadAll's
// regrowth allocated about 5× the limit). A body announced over the limit
// is refused before it is read.
func TestResponseBody_OverTheLimitCostsAtMostTheLimit(t *testing.T) {
	const max = 4 << 20
	srv := bodyServer(t)
	g := bodyClient(t, srv, max)
	ctx := ctxT(t)
	for _, tc := range []struct {
		path   string
		budget uint64 // bytes the whole request may allocate
	}{
		{"/chunked/67108864", max * 3 / 2},
		{"/sized/67108864", 1 << 20},
		{"/chunked/4194305", max * 3 / 2},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := g.Get(ctx, tc.path)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "WithMaxResponseBytes") {
			t.Fatalf("%s: %v, want the limit error", tc.path, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > tc.budget {
			t.Fatalf("%s: the request allocated %d bytes, more than %d", tc.path, got, tc.budget)
		}
	}
}
