// Command fleet runs three replicas of one service acting for the same
// account — fleet mode (pigeon.WithEtcd).
//
//	go run ./examples/fleet
//
// It starts an embedded 3-member etcd cluster on 127.0.0.1 (free ports,
// one data directory each), the example backend (rotating refresh tokens:
// a reused one is rejected) and three AuthorizedPigeon replicas sharing
// one account through etcd. Through several expiries (the backend's
// clock moves past the access token's lifetime) every replica sends
// requests concurrently, and the backend counts one refresh per expiry.
// Then the replica holding the account lock is killed in the middle of a
// refresh (its etcd connection cut: its lease stops being renewed); the
// others wait for its lease to expire, one of them refreshes, and the
// backend still counts one refresh for that expiry.
package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, 3); err != nil {
		fmt.Fprintln(os.Stderr, "pigeon/examples/fleet:", err)
		os.Exit(1)
	}
}
