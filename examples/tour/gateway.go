package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// gatewayUsers is how many users the gateway step serves at once.
const gatewayUsers = 50

// gateway is gateway mode: the same client acts for 50 more users at once,
// each request choosing its account, while alice stays current.
func (t *tour) gateway(ctx context.Context) error {
	users := make([]backend.Tokens, gatewayUsers)
	for i := range users {
		tok, err := t.be.CreateUser(fmt.Sprintf("gateway%02d@example.com", i), "correct horse battery staple")
		if err != nil {
			return err
		}
		if err := t.p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			return err
		}
		users[i] = tok
	}
	cur, err := t.p.CurrentAuth(ctx)
	if err != nil {
		return err
	}
	t.say("%d users saved with SaveAuth; the current account is still %s", gatewayUsers, cur.UID)
	if cur.UID != t.alice.UID {
		return errors.New("SaveAuth changed the current account")
	}
	for _, u := range users {
		t.be.ExpireAccessToken(u.AccessToken)
	}
	before := t.be.Stats().RefreshCalls
	t.say("the server expires all %d access tokens; 4 requests per user start at once, half through As(uid), half through HTTPClient() with ContextWithAccount", gatewayUsers)
	client := t.p.HTTPClient()
	var wg sync.WaitGroup
	errs := make(chan error, 4*gatewayUsers)
	for _, u := range users {
		acct, err := t.p.As(u.UID)
		if err != nil {
			return err
		}
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got string
				if i%2 == 0 {
					me, err := pigeon.GetJSON[meAnswer](ctx, acct, "/me")
					if err != nil {
						errs <- err
						return
					}
					got = me.Data.UID
				} else {
					var err error
					if got, err = meThrough(pigeon.ContextWithAccount(ctx, u.UID), client, t.base); err != nil {
						errs <- err
						return
					}
				}
				if got != u.UID {
					errs <- fmt.Errorf("a request for %s was answered for %s", u.UID, got)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	calls := t.be.Stats().RefreshCalls - before
	t.say("all %d requests answered, each as its own user; refreshes counted by the server: %d (one per user)", 4*gatewayUsers, calls)
	if calls != gatewayUsers {
		return fmt.Errorf("%d refresh calls, want %d", calls, gatewayUsers)
	}
	return nil
}

// meThrough sends GET /me with a plain *http.Client, as another SDK would.
func meThrough(ctx context.Context, c *http.Client, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/me", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /me: %s", resp.Status)
	}
	var me meAnswer
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
		return "", err
	}
	return me.Data.UID, nil
}
