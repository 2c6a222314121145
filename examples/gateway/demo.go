package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/examples/backend"
)

// demo is the backend, the pigeon client and the gateway, each on
// 127.0.0.1:0.
type demo struct {
	be      *backend.Backend
	users   []backend.Tokens
	p       *pigeon.AuthorizedPigeon
	gateway string // base URL of the gateway
	dir     string
	servers []*http.Server
	done    []chan error
}

func startDemo(ctx context.Context, users int) (_ *demo, err error) {
	d := &demo{be: backend.New()}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	base, err := d.serve(d.be)
	if err != nil {
		return nil, err
	}
	if d.dir, err = os.MkdirTemp("", "pigeon-gateway-*"); err != nil {
		return nil, err
	}
	d.p, err = pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(base), pigeon.WithStoreDir(d.dir))
	if err != nil {
		return nil, err
	}
	for i := range users {
		tok, err := d.be.CreateUser(fmt.Sprintf("user%02d@example.com", i), "correct horse battery staple")
		if err != nil {
			return nil, err
		}
		if err := d.p.SaveAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken,
			RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			return nil, err
		}
		d.users = append(d.users, tok)
	}
	if d.gateway, err = d.serve(NewGateway(d.p.HTTPClient(), base)); err != nil {
		return nil, err
	}
	return d, nil
}

// serve starts h on a free loopback port and returns its base URL.
func (d *demo) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	d.servers, d.done = append(d.servers, srv), append(d.done, done)
	return "http://" + ln.Addr().String(), nil
}

func (d *demo) close() {
	for i := len(d.servers) - 1; i >= 0; i-- {
		_ = d.servers[i].Close()
		<-d.done[i]
	}
	if d.p != nil {
		_ = d.p.Close()
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

// me asks the gateway for uid's /me and returns the uid the backend saw.
func (d *demo) me(ctx context.Context, uid string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.gateway+"/users/"+uid+"/me", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /users/%s/me: %d %s", uid, resp.StatusCode, body)
	}
	var me struct {
		Data struct {
			UID string `json:"uid"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &me); err != nil {
		return "", fmt.Errorf("GET /users/%s/me: %w", uid, err)
	}
	return me.Data.UID, nil
}

// everyone calls /me for every user, perUser times each, concurrently, and
// checks that each answer names the user it was sent for.
func (d *demo) everyone(ctx context.Context, perUser int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(d.users)*perUser)
	for _, u := range d.users {
		for range perUser {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := d.me(ctx, u.UID)
				if err == nil && got != u.UID {
					err = fmt.Errorf("request for %s was answered for %q", u.UID, got)
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (d *demo) show(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "one pigeon client holds %d users; the gateway forwards /users/{uid}/... as that user\n", len(d.users))
	cur, err := d.p.CurrentAuth(ctx)
	fmt.Fprintf(out, "current account after %d SaveAuth calls: %q (%v)\n", len(d.users), cur.UID, err)
	if err := d.everyone(ctx, 1); err != nil {
		return err
	}
	fmt.Fprintf(out, "GET /me through the gateway for every user: each answered as its own user\n")
	before := d.be.Stats().RefreshCalls
	for _, u := range d.users {
		d.be.ExpireAccessToken(u.AccessToken)
	}
	if err := d.everyone(ctx, 5); err != nil {
		return err
	}
	refreshes := d.be.Stats().RefreshCalls - before
	fmt.Fprintf(out, "every access token expired, 5 concurrent requests per user: all answered; refreshes counted by the server: %d (one per user)\n", refreshes)
	if refreshes != int64(len(d.users)) {
		return fmt.Errorf("the server counted %d refreshes for %d users", refreshes, len(d.users))
	}
	return nil
}
