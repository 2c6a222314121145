package pigeon_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// Force a refresh and watch every refresh's outcome: the example backend
// issues and rotates the tokens.
func ExampleAuthorizedPigeon_SubscribeRefreshes() {
	be := backend.New()
	defer be.Close()
	srv := httptest.NewServer(be)
	defer srv.Close()
	tok, err := be.CreateUser("ada@example.com", "pw")
	if err != nil {
		fmt.Println(err)
		return
	}

	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(srv.URL), pigeon.WithInMemoryStore())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
		fmt.Println(err)
		return
	}

	events, err := p.SubscribeRefreshes(ctx) // closed when ctx ends or on Close
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Refresh(ctx); err != nil { // one refresh now, valid token or not
		fmt.Println(err)
		return
	}
	ev := <-events
	fmt.Println(ev.UID == tok.UID, ev.Outcome, ev.ExpiresAt.After(time.Now()), ev.Err)
	// Output:
	// true succeeded true <nil>
}
