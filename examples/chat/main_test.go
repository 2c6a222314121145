package main

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apppigeon/pigeon/examples/backend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer safe for the printer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{} // signalled on every write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor blocks until the output contains want.
func (s *syncBuffer) waitFor(ctx context.Context, t *testing.T, want string) {
	t.Helper()
	for !strings.Contains(s.String(), want) {
		select {
		case <-s.ch:
		case <-ctx.Done():
			t.Fatalf("output lacks %q:\n%s", want, s.String())
		}
	}
}

// TestChat_UserAndGhost runs two chat clients against the example backend:
// what one types, both print.
func TestChat_UserAndGhost(t *testing.T) {
	be := backend.New()
	srv := httptest.NewServer(be)
	defer func() { srv.CloseClientConnections(); be.Close(); srv.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type client struct {
		in   *io.PipeWriter
		out  *syncBuffer
		done chan error
	}
	start := func(cfg config) *client {
		r, w := io.Pipe()
		c := &client{in: w, out: &syncBuffer{ch: make(chan struct{}, 1)}, done: make(chan error, 1)}
		go func() { c.done <- run(ctx, cfg, r, c.out) }()
		c.out.waitFor(ctx, t, "joined chat:universal")
		return c
	}
	alice := start(config{server: srv.URL, email: "alice@example.com", password: "pw"})
	ghost := start(config{server: srv.URL, ghost: "casper"})

	if _, err := io.WriteString(ghost.in, "boo\n"); err != nil {
		t.Fatal(err)
	}
	alice.out.waitFor(ctx, t, "[casper] boo")
	ghost.out.waitFor(ctx, t, "[casper] boo")
	if _, err := io.WriteString(alice.in, "hi casper\n"); err != nil {
		t.Fatal(err)
	}
	ghost.out.waitFor(ctx, t, "[alice@example.com] hi casper")

	for _, c := range []*client{alice, ghost} {
		_ = c.in.Close() // Ctrl-D
		if err := <-c.done; err != nil {
			t.Fatalf("run: %v", err)
		}
	}
}

func TestChat_NeedsCredentials(t *testing.T) {
	if err := run(context.Background(), config{server: "http://127.0.0.1:1"}, strings.NewReader(""), io.Discard); err == nil {
		t.Fatal("want an error without -email/-password or -ghost")
	}
}

// TestChat_UsageWithoutArguments: a bare `go run ./examples/chat` prints
// the usage with an example invocation and exits 2.
func TestChat_UsageWithoutArguments(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := chat(context.Background(), nil, strings.NewReader(""), &out, &errOut); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, want := range []string{"usage: chat -email EMAIL -password PASSWORD", "go run ./examples/chat -email me@example.com -password secret", "-ghost"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, errOut.String())
		}
	}
}

// TestChat_WrongPassword: signing in to an existing account with another
// password says so, instead of the 409 of the sign-up attempt.
func TestChat_WrongPassword(t *testing.T) {
	be := backend.New()
	srv := httptest.NewServer(be)
	defer func() { srv.CloseClientConnections(); be.Close(); srv.Close() }()
	if _, err := be.CreateUser("alice@example.com", "right"); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	code := chat(t.Context(), []string{"-server", srv.URL, "-email", "alice@example.com", "-password", "wrong"},
		strings.NewReader(""), io.Discard, &errOut)
	if code != 1 || strings.TrimSpace(errOut.String()) != "chat: wrong password for user alice@example.com" {
		t.Fatalf("exit code %d, stderr %q; want 1 and the wrong-password message", code, errOut.String())
	}
}

// TestChat_InterruptQuitsCleanly: cancelling the context (what Ctrl-C and
// SIGTERM do through signal.NotifyContext) ends a chat that waits for
// input, with exit code 0, closing the client and its socket.
func TestChat_InterruptQuitsCleanly(t *testing.T) {
	be := backend.New()
	srv := httptest.NewServer(be)
	defer func() { srv.CloseClientConnections(); be.Close(); srv.Close() }()
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	wait, waitCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer waitCancel()

	in, typing := io.Pipe()
	defer typing.Close() // ends the stdin reader after the chat has returned
	out := &syncBuffer{ch: make(chan struct{}, 1)}
	code := make(chan int, 1)
	go func() { code <- chat(ctx, []string{"-server", srv.URL, "-ghost", "casper"}, in, out, io.Discard) }()
	out.waitFor(wait, t, "joined chat:universal")

	interrupt()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d after the interrupt, want 0", c)
		}
	case <-wait.Done():
		t.Fatal("chat did not return after the interrupt")
	}
}
