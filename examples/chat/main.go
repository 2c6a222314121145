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
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/apppigeon/pigeon"
)

const room = "chat:universal"

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "backend base URL")
	email := flag.String("email", "", "sign in (or sign up) with this email")
	password := flag.String("password", "", "password for -email")
	ghost := flag.String("ghost", "", "join as an anonymous ghost with this name")
	store := flag.String("store", "", "token store directory (default: in memory)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, config{server: *server, email: *email, password: *password, ghost: *ghost, store: *store}, os.Stdin, os.Stdout)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

type config struct{ server, email, password, ghost, store string }

// run connects, then relays lines from in to the room and events to out
// until in ends or ctx is cancelled.
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
	fmt.Fprintf(out, "joined %s as %s; type a message and press enter (Ctrl-D to quit)\n", room, name)

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
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		text := strings.TrimSpace(lines.Text())
		if text == "" {
			continue
		}
		if err := client.Emit(ctx, "message", map[string]string{"text": text}); err != nil {
			fmt.Fprintln(out, "send failed:", err)
		}
	}
	_ = sub.Close()
	<-printed
	if err := lines.Err(); err != nil {
		return err
	}
	return ctx.Err()
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
	if errors.As(err, &se) && se.Response.StatusCode == 401 {
		t, err = pigeon.PostJSON[tokens](ctx, p, "/auth/signup", creds)
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
