// Command gateway is a small HTTP service that acts for many users through
// one pigeon client — gateway mode.
//
//	go run ./examples/gateway
//
// It starts the example backend on 127.0.0.1:0, signs up a few users and
// saves each user's tokens into one AuthorizedPigeon with SaveAuth (none of
// them becomes "current"). Its own API forwards
//
//	/users/{uid}/{path...}  →  backend /{path...}, sent as uid
//
// through one *http.Client from HTTPClient(): the account is chosen per
// request with ContextWithAccount, so each user's token is attached, and a
// refused token is refreshed once per account, however many requests of
// that account are waiting. It then expires every user's access token,
// calls /me for every user concurrently, and prints the refreshes the
// backend counted: one per user.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, 20); err != nil {
		fmt.Fprintln(os.Stderr, "pigeon/examples/gateway:", err)
		os.Exit(1)
	}
}

// run starts everything, shows the gateway serving users users, and stops.
func run(ctx context.Context, out io.Writer, users int) error {
	d, err := startDemo(ctx, users)
	if err != nil {
		return err
	}
	defer d.close()
	return d.show(ctx, out)
}
