package pigeon_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// The AuthStore actor spawned in a caller-owned ActorSystem and driven with
// package messages alone: no facade.
func Example_authStoreActor() {
	system := actors.NewSystem(nil) // or actor.NewActorSystem() with your own config
	defer system.Shutdown()
	store := persistence.NewMemory()
	defer store.Close()

	pid := system.Root.Spawn(actors.NewAuthStoreProps(store))
	defer func() { _ = actors.StopAndWait(context.Background(), system, pid) }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := actors.AskAs[*messages.SavedAuth](ctx, system, pid, &messages.SaveAuth{
		Record:      messages.AuthRecord{UID: "alice", AccessToken: "a-token", RefreshToken: "r-token"},
		MakeCurrent: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cur, err := actors.AskAs[*messages.CurrentAuth](ctx, system, pid, &messages.GetCurrentAuth{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cur.Record.UID, cur.Record.AccessToken)

	_, _ = actors.AskAs[*messages.LoggedOut](ctx, system, pid, &messages.LogOut{})
	_, err = actors.AskAs[*messages.CurrentAuth](ctx, system, pid, &messages.GetCurrentAuth{})
	fmt.Println(err)
	// Output:
	// alice [REDACTED]
	// pigeon: no current account
}

// The facade: save a login, read it back, watch the auth status.
func ExampleNewAuthorized() {
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL("https://api.example.com"), pigeon.WithInMemoryStore())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx := context.Background()
	status, _ := p.SubscribeAuth(ctx)
	fmt.Println((<-status).State)

	_ = p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "alice", AccessToken: "a", RefreshToken: "r"})
	fmt.Println(<-status)

	rec, _ := p.CurrentAuth(ctx)
	fmt.Printf("%s %v\n", rec.UID, rec.RefreshToken)
	// Output:
	// Unauthenticated
	// {Authenticated alice}
	// alice [REDACTED]
}

// The README's "Retries and timeouts", against the example backend.
func ExampleWithRetry() {
	_, base, tok, stop := exampleBackend()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := withRetries(base)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}); err != nil {
		fmt.Println(err)
		return
	}
	if err := getWithBudget(ctx, p); err != nil {
		fmt.Println(err)
	}
	// Output:
	// GET /me: 200
}

// A server that is busy once: the GET is sent again and succeeds.
func ExampleRetryPolicy() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "1") // capped by MaxDelay below
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL),
		pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 3, MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	r, err := g.Get(context.Background(), "/status")
	fmt.Println(r.StatusCode, err, hits.Load())
	// Output:
	// 200 <nil> 2
}

// A call that does not finish within its budget fails with an error that
// matches context.DeadlineExceeded and names the budget.
func ExampleWithTimeout() {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	_, err = g.Get(context.Background(), "/slow", pigeon.WithTimeout(50*time.Millisecond))
	fmt.Println(errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "WithTimeout budget of 50ms"))
	// Output:
	// true true
}
