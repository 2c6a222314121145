package main

// The tour starts the backend on 127.0.0.1:0, uses a temporary encrypted
// store and prints each step.

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tour failed:", err)
		os.Exit(1)
	}
}

// run performs the tour, writing readable output to out.
func run(ctx context.Context, out io.Writer) error {
	t, err := newTour(ctx, out)
	if err != nil {
		return err
	}
	defer t.close()
	for _, s := range t.steps() {
		t.section(s.title)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	t.say("\nThe tour is over: every step behaved as described.")
	return nil
}
