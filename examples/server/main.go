// Command server runs pigeon's example backend standalone:
//
//	go run ./examples/server -addr 127.0.0.1:8080
//
// It serves the HTTP API and the pigeon.v1 websocket documented in package
// github.com/apppigeon/pigeon/examples/backend, and shuts down gracefully on
// SIGINT or SIGTERM: websockets are closed with 1001, in-flight requests are
// given up to -shutdown-timeout to finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apppigeon/pigeon/examples/backend"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // after the first signal, a second one kills the process
	if err := run(ctx, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, "pigeon/examples/server:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully. ready, if not
// nil, is called with the listening address once the server accepts.
func run(ctx context.Context, args []string, ready func(addr string)) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	accessTTL := fs.Duration("access-ttl", backend.DefaultAccessTTL, "access-token lifetime")
	refreshTTL := fs.Duration("refresh-ttl", 0, "refresh-token lifetime (0: never expires)")
	ping := fs.Duration("ping-interval", backend.DefaultPingInterval, "websocket heartbeat interval")
	history := fs.Int("history", backend.DefaultHistorySize, "events kept per room")
	jwt := fs.Bool("jwt", false, "issue JWT-shaped access tokens (HS256, with exp)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "grace period for in-flight requests on shutdown")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	opts := []backend.Option{
		backend.WithAccessTTL(*accessTTL),
		backend.WithRefreshTTL(*refreshTTL),
		backend.WithPingInterval(*ping),
		backend.WithHistorySize(*history),
		backend.WithLogger(logger),
	}
	if *jwt {
		opts = append(opts, backend.WithJWTAccessTokens())
	}
	b := backend.New(opts...)
	defer b.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("pigeon example backend listening", "url", "http://"+ln.Addr().String(), "ws", "ws://"+ln.Addr().String()+"/ws")
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")

	// Stop accepting and close the websockets (hijacked connections are not
	// tracked by http.Server), then wait for in-flight HTTP requests.
	b.Close()
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if sErr := <-serveErr; !errors.Is(sErr, http.ErrServerClosed) && err == nil {
		err = sErr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	st := b.Stats()
	logger.Info("stopped", "websocketsServed", st.WSTotal, "refreshCalls", st.RefreshCalls)
	return nil
}
