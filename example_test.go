package pigeon_test

import (
	"context"
	"fmt"
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
