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
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/guardactor"
	"github.com/apppigeon/pigeon/messages"
)

type step struct {
	title string
	run   func(ctx context.Context) error
}

// tour holds everything the steps share; close releases all of it.
type tour struct {
	out      io.Writer
	be       *backend.Backend
	srv      *http.Server
	srvDone  chan error
	base     string
	dir      string
	p        *pigeon.AuthorizedPigeon
	g        *pigeon.GhostPigeon
	sw       *pigeon.Switch
	status   <-chan pigeon.AuthStatus
	stop     context.CancelFunc
	alice    backend.Tokens
	aliceSub *pigeon.Subscription
	ghostSub *pigeon.Subscription
	bob      backend.Tokens
	closers  []func()
	mu       sync.Mutex
	flaky    *flaky
	metrics  *sdkmetric.ManualReader
}

func newTour(ctx context.Context, out io.Writer) (*tour, error) {
	t := &tour{out: out, be: backend.New()}
	t.flaky = &flaky{next: t.be}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.base = "http://" + ln.Addr().String()
	t.srv = &http.Server{Handler: t.flaky, ReadHeaderTimeout: 10 * time.Second}
	t.srvDone = make(chan error, 1)
	go func() { t.srvDone <- t.srv.Serve(ln) }()
	t.dir, err = os.MkdirTemp("", "pigeon-tour-*")
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *tour) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	if t.sw != nil {
		_ = t.sw.Close()
	} else {
		if t.p != nil {
			_ = t.p.Close()
		}
		if t.g != nil {
			_ = t.g.Close()
		}
	}
	t.be.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.srv.Shutdown(ctx)
	<-t.srvDone
	if t.dir != "" {
		_ = os.RemoveAll(t.dir)
	}
}

func (t *tour) say(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, format+"\n", args...)
}

func (t *tour) section(title string) { t.say("\n== %s", title) }

func (t *tour) steps() []step {
	return []step{
		{"1. An authorized client with an encrypted store", t.start},
		{"2. Sign up and log in", t.signup},
		{"3. An authorized request", t.request},
		{"4. Access token expiry: 100 concurrent requests, one refresh", t.expiry},
		{"5. A second account and switching", t.accounts},
		{"5b. Gateway mode: the same client serves 50 more users at once", t.gateway},
		{"6. Chat over websockets: alice (authorized) and a ghost share a room", t.chat},
		{"7. The token is refreshed while the socket stays connected", t.liveRefresh},
		{"7b. Running it in a service: Refresh, the refresh and socket-state streams, retries, metrics", t.service},
		{"8. Logout, and the route guard sends you to /login?continue=…", t.guard},
		{"9. One reference, two modes: the Switch", t.switchModes},
	}
}

func (t *tour) start(ctx context.Context) error {
	var err error
	storeDir := filepath.Join(t.dir, "store")
	t.p, err = pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		append([]pigeon.Option{pigeon.WithBaseURL(t.base), pigeon.WithStoreDir(storeDir)}, t.serviceOptions()...)...)
	if err != nil {
		return err
	}
	t.say("backend listening on %s", t.base)
	t.say("token store: %s (badger, AES-encrypted; key generated into %s, mode 0600)", storeDir, filepath.Base(storeDir)+".key")
	sctx, cancel := context.WithCancel(context.Background())
	t.stop = cancel
	t.closers = append(t.closers, cancel)
	t.status, err = t.p.SubscribeAuth(sctx)
	if err != nil {
		return err
	}
	return t.expectStatus(ctx, pigeon.Unauthenticated, "")
}

// expectStatus reads the next value of the auth-status stream.
func (t *tour) expectStatus(ctx context.Context, state pigeon.AuthState, uid string) error {
	select {
	case s := <-t.status:
		t.say("auth status stream: %s %s", s.State, s.UID)
		if s.State != state || s.UID != uid {
			return fmt.Errorf("status %v, want %v %s", s, state, uid)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type tokensAnswer struct {
	Data backend.Tokens `json:"data"`
}

func (t *tour) signup(ctx context.Context) error {
	creds := map[string]string{"email": "alice@example.com", "password": "correct horse"}
	if _, err := t.p.Post(ctx, "/auth/signup", creds); err != nil {
		return err
	}
	t.say("POST /auth/signup alice@example.com → 201")
	ans, err := pigeon.PostJSON[tokensAnswer](ctx, t.p, "/auth/login", creds)
	if err != nil {
		return err
	}
	t.alice = ans.Data
	t.say("POST /auth/login → uid %s, access token %v (a Secret: it never prints)", ans.Data.UID, pigeon.Secret(ans.Data.AccessToken))
	if err := t.p.SaveNewAuth(ctx, pigeon.SaveAuthParams{
		UID: ans.Data.UID, AccessToken: ans.Data.AccessToken, RefreshToken: ans.Data.RefreshToken, ExpiresAt: ans.Data.ExpiresAt,
		Data: map[string]string{"email": "alice@example.com"},
	}); err != nil {
		return err
	}
	t.say("SaveNewAuth: one synced, encrypted write; alice is the current account")
	return t.expectStatus(ctx, pigeon.Authenticated, t.alice.UID)
}

type meAnswer struct {
	Data struct {
		UID   string `json:"uid"`
		Email string `json:"email"`
	} `json:"data"`
}

func (t *tour) request(ctx context.Context) error {
	me, err := pigeon.GetJSON[meAnswer](ctx, t.p, "/me")
	if err != nil {
		return err
	}
	t.say("GET /me with alice's bearer → %s (%s)", me.Data.Email, me.Data.UID)
	if me.Data.UID != t.alice.UID {
		return errors.New("wrong user")
	}
	return nil
}

func (t *tour) expiry(ctx context.Context) error {
	cur, err := t.p.CurrentAuth(ctx)
	if err != nil {
		return err
	}
	t.be.ExpireAccessToken(string(cur.AccessToken))
	before := t.be.Stats().RefreshCalls
	t.say("the server expires alice's access token; 100 requests start at once")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := t.p.Get(ctx, "/me"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	calls := t.be.Stats().RefreshCalls - before
	t.say("all 100 succeeded; refresh calls counted by the server: %d", calls)
	if calls != 1 {
		return fmt.Errorf("%d refresh calls, want 1", calls)
	}
	after, err := t.p.CurrentAuth(ctx)
	if err != nil {
		return err
	}
	if after.RefreshToken == cur.RefreshToken {
		return errors.New("refresh token was not rotated")
	}
	t.say("the rotated access and refresh tokens were saved in one synced write; no auth event (a refresh is not a transition)")
	return nil
}

func (t *tour) accounts(ctx context.Context) error {
	creds := map[string]string{"email": "bob@example.com", "password": "battery staple"}
	ans, err := pigeon.PostJSON[tokensAnswer](ctx, t.p, "/auth/signup", creds)
	if err != nil {
		return err
	}
	t.bob = ans.Data
	if err := t.p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: t.bob.UID, AccessToken: t.bob.AccessToken, RefreshToken: t.bob.RefreshToken, ExpiresAt: t.bob.ExpiresAt}); err != nil {
		return err
	}
	t.say("bob signed up and was saved: he is now current")
	if err := t.expectStatus(ctx, pigeon.Authenticated, t.bob.UID); err != nil {
		return err
	}
	all, err := t.p.AllAuths(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, r := range all {
		ids = append(ids, r.UID)
	}
	t.say("AllAuths: %s", strings.Join(ids, ", "))
	me, err := pigeon.GetJSON[meAnswer](ctx, t.p, "/me")
	if err != nil {
		return err
	}
	t.say("GET /me → %s", me.Data.Email)
	if err := t.p.SwitchAccount(ctx, t.alice.UID); err != nil {
		return err
	}
	if err := t.expectStatus(ctx, pigeon.Authenticated, t.alice.UID); err != nil {
		return err
	}
	me, err = pigeon.GetJSON[meAnswer](ctx, t.p, "/me")
	if err != nil {
		return err
	}
	t.say("SwitchAccount(alice); GET /me → %s", me.Data.Email)
	if me.Data.UID != t.alice.UID {
		return errors.New("switch did not take")
	}
	return nil
}

func (t *tour) wsURL() string { return "ws" + strings.TrimPrefix(t.base, "http") + "/ws" }

type chatMessage struct {
	Text     string `json:"text"`
	FromName string `json:"fromName"`
	Kind     string `json:"kind"`
}

func (t *tour) receive(ctx context.Context, who string, sub *pigeon.Subscription) (chatMessage, error) {
	select {
	case ev, ok := <-sub.C:
		if !ok {
			return chatMessage{}, fmt.Errorf("%s's subscription ended: %v", who, sub.Err())
		}
		var m chatMessage
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return m, err
		}
		t.say("  %s receives %q from %s (%s), seq %d", who, m.Text, m.FromName, m.Kind, ev.Position.Seq)
		return m, nil
	case <-ctx.Done():
		return chatMessage{}, ctx.Err()
	}
}

// bothReceive reads the next chat message on alice's and casper's sockets.
func (t *tour) bothReceive(ctx context.Context) error {
	if _, err := t.receive(ctx, "alice", t.aliceSub); err != nil {
		return err
	}
	_, err := t.receive(ctx, "casper", t.ghostSub)
	return err
}

func (t *tour) chat(ctx context.Context) error {
	room := pigeon.SocketConnectParams{URL: t.wsURL(), JoinID: "chat:universal"}
	if err := t.p.SocketInit(ctx, room); err != nil {
		return err
	}
	var err error
	t.aliceSub, err = t.p.Listen(ctx, "message")
	if err != nil {
		return err
	}
	t.say("alice: SocketInit(%s, join chat:universal) → init with her bearer, init_ack, join", t.wsURL())

	t.g, err = pigeon.NewGhost(pigeon.WithBaseURL(t.base))
	if err != nil {
		return err
	}
	type ghostAnswer struct {
		Data backend.Ghost `json:"data"`
	}
	gh, err := pigeon.PostJSON[ghostAnswer](ctx, t.g, "/chat/ghost/register", map[string]string{"name": "casper"})
	if err != nil {
		return err
	}
	t.g.SetAuthToken(gh.Data.Token)
	if err := t.g.SocketInit(ctx, room); err != nil {
		return err
	}
	t.ghostSub, err = t.g.Listen(ctx, "message")
	if err != nil {
		return err
	}
	t.say("casper: a ghost registered over HTTP (POST /chat/ghost/register) and joined the same room")

	if _, err := t.g.EmitWithAck(ctx, "message", map[string]string{"text": "boo! anyone here?"}); err != nil {
		return err
	}
	t.say("casper emits (and the server acks)")
	if err := t.bothReceive(ctx); err != nil {
		return err
	}
	if err := t.p.Emit(ctx, "message", map[string]string{"text": "hi casper, alice here"}); err != nil {
		return err
	}
	t.say("alice emits")
	if err := t.bothReceive(ctx); err != nil {
		return err
	}
	return nil
}

func (t *tour) liveRefresh(ctx context.Context) error {
	before := t.be.Stats()
	cur, err := t.p.CurrentAuth(ctx)
	if err != nil {
		return err
	}
	t.be.ExpireAccessToken(string(cur.AccessToken))
	t.say("the server expires alice's access token again; GET /me → 401 → one refresh → replay")
	if _, err := t.p.Get(ctx, "/me"); err != nil {
		return err
	}
	if err := t.p.Emit(ctx, "message", map[string]string{"text": "still here after the refresh"}); err != nil {
		return err
	}
	if err := t.bothReceive(ctx); err != nil {
		return err
	}
	after := t.be.Stats()
	t.say("server counters: refresh calls +%d, update frames acked +%d, websocket connections opened +%d",
		after.RefreshCalls-before.RefreshCalls, after.UpdateAcks-before.UpdateAcks, after.WSTotal-before.WSTotal)
	if after.UpdateAcks-before.UpdateAcks != 1 || after.WSTotal != before.WSTotal {
		return errors.New("the socket did not get exactly one live update")
	}
	t.say("the live socket got the new token as an `update` frame: no reconnect, no missed message")
	return nil
}

func (t *tour) guard(ctx context.Context) error {
	routes := []guardactor.Node{
		&guardactor.Route{Name: "login", Path: "/login", ShieldOf: []string{"auth"}, DiscardedBy: []string{"auth"}},
		&guardactor.Route{Name: "home", Path: "/home", FollowUp: []string{"auth"}},
		&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
			&guardactor.Route{Name: "profile", Path: "/app/profile"},
		}},
	}
	router, err := guardactor.New(routes, []string{"auth"})
	if err != nil {
		return err
	}
	system, _, _ := t.p.Actors()
	props, err := guardactor.NewProps(router, guardactor.WithInitialStates(guardactor.Snapshot{"auth": true}))
	if err != nil {
		return err
	}
	pid := system.Root.Spawn(props)
	t.closers = append(t.closers, func() { _ = actors.StopAndWait(context.Background(), system, pid) })

	nav, err := actors.AskAs[*messages.Navigated](ctx, system, pid, &messages.Navigate{Location: "/app/profile?tab=security"})
	if err != nil {
		return err
	}
	t.say("navigate to /app/profile?tab=security while signed in → %s", nav.Location)

	sub, err := actors.AskAs[*messages.RedirectSubscription](ctx, system, pid, &messages.SubscribeRedirects{})
	if err != nil {
		return err
	}
	// The guard follows alice's auth-status stream: no polling.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := t.p.SubscribeAuth(fctx)
	if err != nil {
		return err
	}
	f := guardactor.Follow(system, pid, "auth", stream, func(s pigeon.AuthStatus) bool { return s.State == pigeon.Authenticated })
	defer f.Close()

	if err := t.p.LogOut(ctx); err != nil {
		return err
	}
	t.say("LogOut: alice's tokens are removed from the store")
	if err := t.expectStatus(ctx, pigeon.Unauthenticated, ""); err != nil {
		return err
	}
	if _, ok := <-t.aliceSub.C; !ok {
		t.say("alice's socket was disconnected with the logout (subscription ended: %v)", t.aliceSub.Err())
	}
	select {
	case r := <-sub.C:
		t.say("the guard actor re-evaluated on its own and redirects %s → %s (rule %s, guard %s)", r.From, r.To, r.Rule, r.Guard)
		if !strings.HasPrefix(r.To, "/login?continue=") {
			return fmt.Errorf("redirect to %s", r.To)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	_, err = t.p.Get(ctx, "/me")
	var se *pigeon.StatusError
	if !errors.Is(err, pigeon.ErrNoAuth) || !errors.As(err, &se) || se.Response.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("GET /me after logout: %v, want the server's 401 matching ErrNoAuth", err)
	}
	t.say("GET /me after logout → %d, matching ErrNoAuth (no bearer is sent without an account)", se.Response.StatusCode)
	// Sign alice in again: the guard passes, the login route is discarded,
	// and continue takes her back where she was.
	login, err := pigeon.PostJSON[tokensAnswer](ctx, t.p, "/auth/login", map[string]string{"email": "alice@example.com", "password": "correct horse"})
	if err != nil {
		return err
	}
	if err := t.p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: login.Data.UID, AccessToken: login.Data.AccessToken, RefreshToken: login.Data.RefreshToken, ExpiresAt: login.Data.ExpiresAt}); err != nil {
		return err
	}
	if err := t.expectStatus(ctx, pigeon.Authenticated, t.alice.UID); err != nil {
		return err
	}
	select {
	case r := <-sub.C:
		t.say("signed in again: %s → %s (the continue location)", r.From, r.To)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (t *tour) switchModes(ctx context.Context) error {
	var err error
	t.sw, err = pigeon.NewSwitch(t.p, t.g, pigeon.WithFollowAuth())
	if err != nil {
		return err
	}
	var app pigeon.AppPigeon = t.sw
	modes, err := t.sw.SubscribeMode(ctx)
	if err != nil {
		return err
	}
	t.say("mode: %s", <-modes)
	r, err := app.Get(ctx, "/echo")
	if err != nil {
		return err
	}
	t.say("app.Get(/echo) as authorized → %s", strings.TrimSpace(string(r.Body)))
	if err := t.p.LogOut(ctx); err != nil {
		return err
	}
	if err := t.expectStatus(ctx, pigeon.Unauthenticated, ""); err != nil {
		return err
	}
	t.say("LogOut → mode: %s (the Switch follows the auth stream)", <-modes)
	r, err = app.Get(ctx, "/public/echo")
	if err != nil {
		return err
	}
	t.say("the same reference, app.Get(/public/echo) as ghost → %s", strings.TrimSpace(string(r.Body)))
	return nil
}
