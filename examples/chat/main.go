// Command chat is an interactive terminal chat client for the example
// backend (go run ./examples/server): it signs in (or registers as a
// ghost), joins the universal room over a websocket, prints every message
// and sends each line you type.
//
//	go run ./examples/server -addr 127.0.0.1:8080 &
//	go run ./examples/chat -server http://127.0.0.1:8080 -email me@example.com -password secret
//	go run ./examples/chat -server http://127.0.0.1:8080 -ghost casper
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/apppigeon/pigeon"
)

const room = "chat:universal"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := chat(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: chat -email EMAIL -password PASSWORD [-server URL] [-store DIR]
       chat -ghost NAME [-server URL]

A terminal chat in the example backend's universal room: signs in (signing
up first if the email is new) or joins as a ghost, prints every message and
sends each line you type. Ctrl-D or Ctrl-C quits. For example:

  go run ./examples/server -addr 127.0.0.1:8080 &
  go run ./examples/chat -email me@example.com -password secret
  go run ./examples/chat -ghost casper

Flags:
`

// chat is the command: it parses args and runs the chat until in ends or
// ctx is cancelled (Ctrl-C, SIGTERM), both of which are a clean exit. It
// returns the exit code: 0, 1 on an error, 2 on a usage error.
func chat(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usage); fs.PrintDefaults() }
	var cfg config
	fs.StringVar(&cfg.server, "server", "http://127.0.0.1:8080", "backend base URL")
	fs.StringVar(&cfg.email, "email", "", "sign in (or sign up) with this email")
	fs.StringVar(&cfg.password, "password", "", "password for -email")
	fs.StringVar(&cfg.ghost, "ghost", "", "join as an anonymous ghost with this name")
	fs.StringVar(&cfg.store, "store", "", "token store directory (default: in memory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || (cfg.ghost == "" && (cfg.email == "" || cfg.password == "")) {
		fs.Usage()
		return 2
	}
	err := run(ctx, cfg, in, out)
	if err == nil || ctx.Err() != nil {
		return 0
	}
	fmt.Fprintln(errOut, "chat:", err)
	return 1
}

type config struct{ server, email, password, ghost, store string }

// run connects, then relays lines from in to the room and events to out
// until in ends or ctx is cancelled. On cancellation it returns at once:
// the goroutine reading in stays blocked in its Read until in ends (the
// process exits; a test closes its pipe).
func run(ctx context.Context, cfg config, in io.Reader, out io.Writer) error {
	client, name, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	wsURL := "ws" + strings.TrimPrefix(strings.TrimSuffix(cfg.server, "/"), "http") + "/ws"
	if err := client.SocketInit(ctx, pigeon.SocketConnectParams{URL: wsURL, JoinID: room}); err != nil {
		return fmt.Errorf("connecting to %s: %w", wsURL, err)
	}
	sub, err := client.Listen(ctx, "message")
	if err != nil {
		return err
	}
	defer sub.Close()
	fmt.Fprintf(out, "joined %s as %s; type a message and press enter (Ctrl-D or Ctrl-C to quit)\n", room, name)

	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for ev := range sub.C {
			var m struct {
				From string `json:"fromName"`
				Text string `json:"text"`
			}
			if json.Unmarshal(ev.Data, &m) != nil || m.Text == "" {
				fmt.Fprintf(out, "%s\n", ev.Data)
				continue
			}
			fmt.Fprintf(out, "[%s] %s\n", m.From, m.Text)
		}
	}()
	defer func() { _ = sub.Close(); <-printed }()

	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	var scanErr error // set before lines is closed
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
		scanErr = sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok := <-lines:
			if !ok {
				if scanErr != nil {
					return scanErr
				}
				return ctx.Err()
			}
			text := strings.TrimSpace(line)
			if text == "" {
				continue
			}
			if err := client.Emit(ctx, "message", map[string]string{"text": text}); err != nil {
				fmt.Fprintln(out, "send failed:", err)
			}
		}
	}
}

type tokens struct {
	Data struct {
		UID          string `json:"uid"`
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
		GhostID      string `json:"ghostId"`
		Token        string `json:"token"`
	} `json:"data"`
}

func connect(ctx context.Context, cfg config) (pigeon.AppPigeon, string, error) {
	if cfg.ghost != "" {
		g, err := pigeon.NewGhost(pigeon.WithBaseURL(cfg.server))
		if err != nil {
			return nil, "", err
		}
		t, err := pigeon.PostJSON[tokens](ctx, g, "/chat/ghost/register", map[string]string{"name": cfg.ghost})
		if err != nil {
			g.Close()
			return nil, "", fmt.Errorf("ghost registration: %w", err)
		}
		g.SetAuthToken(t.Data.Token)
		return g, cfg.ghost + " (ghost)", nil
	}
	if cfg.email == "" || cfg.password == "" {
		return nil, "", errors.New("give -email and -password, or -ghost NAME")
	}
	opts := []pigeon.Option{pigeon.WithBaseURL(cfg.server)}
	if cfg.store != "" {
		opts = append(opts, pigeon.WithStoreDir(cfg.store))
	} else {
		opts = append(opts, pigeon.WithInMemoryStore())
	}
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"}, opts...)
	if err != nil {
		return nil, "", err
	}
	creds := map[string]string{"email": cfg.email, "password": cfg.password}
	t, err := pigeon.PostJSON[tokens](ctx, p, "/auth/login", creds)
	var se *pigeon.StatusError
	if errors.As(err, &se) && se.Response.StatusCode == http.StatusUnauthorized {
		// Unknown email or wrong password: try signing up. The backend
		// answers 409 (email taken) when the email has an account.
		t, err = pigeon.PostJSON[tokens](ctx, p, "/auth/signup", creds)
		if errors.As(err, &se) && se.Response.StatusCode == http.StatusConflict {
			p.Close()
			return nil, "", fmt.Errorf("wrong password for user %s", cfg.email)
		}
	}
	if err != nil {
		p.Close()
		return nil, "", fmt.Errorf("sign in: %w", err)
	}
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: t.Data.UID, AccessToken: t.Data.AccessToken, RefreshToken: t.Data.RefreshToken}); err != nil {
		p.Close()
		return nil, "", err
	}
	return p, cfg.email, nil
}
