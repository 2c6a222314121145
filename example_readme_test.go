package pigeon_test

// The README's quick starts. Each ```go block of README.md is one or more
// top-level declarations copied verbatim from this file
// (TestREADME_GoBlocksAreCompiled checks it), so a pasted snippet builds;
// the Example functions below run them against the example backend.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/apppigeon/pigeon"
	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/examples/backend"
	"github.com/apppigeon/pigeon/guardactor"
	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// Login is what the example backend's POST /auth/login answers.
type Login struct {
	Data struct {
		UID          string    `json:"uid"`
		AccessToken  string    `json:"accessToken"`
		RefreshToken string    `json:"refreshToken"`
		ExpiresAt    time.Time `json:"expiresAt"`
	} `json:"data"`
}

// Me is what the example backend's GET /me answers.
type Me struct {
	Data struct {
		UID   string `json:"uid"`
		Email string `json:"email"`
	} `json:"data"`
}

func quickStart(ctx context.Context, baseURL, storeDir string, logger *zap.Logger) error {
	p, err := pigeon.NewAuthorized(
		pigeon.JSONRefresher{Path: "/auth/refresh"}, // or pigeon.OAuth2Refresher{...}
		pigeon.WithBaseURL(baseURL),
		pigeon.WithStoreDir(storeDir), // encrypted at rest; default: os.UserConfigDir()/pigeon/default
		pigeon.WithLogger(logger),     // tokens are never logged
	)
	if err != nil {
		return err
	}
	defer p.Close()

	status, err := p.SubscribeAuth(ctx) // the current status, then each real transition
	if err != nil {
		return err
	}
	fmt.Println((<-status).State)

	// Your own login call (no bearer is sent while nobody is signed in).
	login, err := pigeon.PostJSON[Login](ctx, p, "/auth/login",
		map[string]string{"email": "alice@example.com", "password": "secret"})
	if err != nil {
		return err
	}
	err = p.SaveNewAuth(ctx, pigeon.SaveAuthParams{
		UID: login.Data.UID, AccessToken: login.Data.AccessToken,
		RefreshToken: login.Data.RefreshToken, ExpiresAt: login.Data.ExpiresAt,
	})
	if err != nil {
		return err
	}
	fmt.Println((<-status).State)

	me, err := pigeon.GetJSON[Me](ctx, p, "/me") // bearer attached; 401 → one refresh → replay
	if err != nil {
		return err
	}
	fmt.Println("signed in as", me.Data.Email)

	// JSON body; []byte, string, url.Values and io.Reader work too.
	if _, err := p.Post(ctx, "/echo", map[string]string{"title": "hi"}); err != nil {
		return err
	}

	_, err = p.Get(ctx, "/no-such-page")
	if errors.Is(err, pigeon.ErrSessionExpired) {
		return err // the refresh token was refused: sign in again
	}
	var se *pigeon.StatusError // a status >= 400 comes back with its Response
	if errors.As(err, &se) {
		fmt.Println("status", se.Response.StatusCode)
	}

	if err := p.LogOut(ctx); err != nil {
		return err
	}
	fmt.Println((<-status).State)
	return nil
}

func useHTTPClient(ctx context.Context, p *pigeon.AuthorizedPigeon, baseURL string) error {
	hc := p.HTTPClient() // hand it to any SDK that takes an *http.Client
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/me", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req) // bearer, refresh and replay as with p.Get
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Println("GET /me:", resp.StatusCode)
	return nil
}

func withRetries(baseURL string) (*pigeon.AuthorizedPigeon, error) {
	return pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(baseURL), pigeon.WithInMemoryStore(),
		// GET, HEAD, OPTIONS, PUT, DELETE (or any request with an Idempotency-Key)
		// again on 429, 502, 503, 504 and network errors; full jitter, Retry-After
		// honoured up to MaxDelay.
		pigeon.WithRetry(pigeon.RetryPolicy{MaxAttempts: 4, MinDelay: 200 * time.Millisecond, MaxDelay: 5 * time.Second}))
}

func getWithBudget(ctx context.Context, p *pigeon.AuthorizedPigeon) error {
	// One budget for the whole call: token and refresh waits, every retry, the body.
	r, err := p.Get(ctx, "/me", pigeon.WithTimeout(10*time.Second))
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("GET /me took too long: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Println("GET /me:", r.StatusCode)
	return nil
}

func sockets(ctx context.Context, p *pigeon.AuthorizedPigeon, wsURL string) error {
	// pigeon.v1 (any URL) or socket.io v4 (a path containing /socket.io)
	err := p.SocketInit(ctx, pigeon.SocketConnectParams{
		URL: wsURL, JoinID: "chat:universal", // Token "" = the current account's, kept fresh
	})
	if err != nil {
		return err
	}
	sub, err := p.Listen(ctx, "message") // bounded queue (256), overflow policy per WithListenerQueue
	if err != nil {
		return err
	}
	defer sub.Close()

	// Emit is buffered while reconnecting (ErrBufferFull beyond the bound).
	if err := p.Emit(ctx, "message", map[string]string{"text": "hi"}); err != nil {
		return err
	}
	// EmitWithAck waits for the server's ack.
	if _, err := p.EmitWithAck(ctx, "message", map[string]string{"text": "anyone?"}); err != nil {
		return err
	}
	for range 2 {
		ev, ok := <-sub.C // ev.Gap marks events lost across a reconnect
		if !ok {
			return sub.Err()
		}
		var m struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return err
		}
		fmt.Println(ev.Name, m.Text)
	}
	return p.DisconnectSocket() // auth and HTTP keep working
}

func ghostAndSwitch(ctx context.Context, p *pigeon.AuthorizedPigeon, baseURL, ghostToken string) error {
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(baseURL))
	if err != nil {
		return err
	}
	g.SetAuthToken(ghostToken) // optional bearer; no refresh, no auth events, a 401 is returned as is

	s, err := pigeon.NewSwitch(p, g, pigeon.WithFollowAuth()) // signed in → authorized, signed out → ghost
	if err != nil {
		g.Close()
		return err
	}
	defer s.Close()                    // closes p and g too
	modes, err := s.SubscribeMode(ctx) // the active mode first, then every change
	if err != nil {
		return err
	}

	var app pigeon.AppPigeon = s // keeps working across mode changes
	fmt.Println(<-modes)         // authorized: an account is signed in
	if _, err := app.Get(ctx, "/echo"); err != nil {
		return err
	}
	if err := p.LogOut(ctx); err != nil {
		return err
	}
	fmt.Println(<-modes)               // ghost: signed out
	resp, err := app.Get(ctx, "/echo") // now with the ghost's bearer
	if err != nil {
		return err
	}
	fmt.Println(resp.StatusCode)
	return nil
}

func routeGuards(signedIn func(context.Context) bool, mux http.Handler) (http.Handler, error) {
	router, err := guardactor.New([]guardactor.Node{
		&guardactor.Route{Name: "login", Path: "/login", ShieldOf: []string{"auth"}, DiscardedBy: []string{"auth"}},
		&guardactor.Route{Name: "home", Path: "/home", FollowUp: []string{"auth"}},
		&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
			&guardactor.Route{Name: "profile", Path: "/app/profile"},
		}},
	}, []string{"auth"}) // configuration errors here, typed, naming guard and route
	if err != nil {
		return nil, err
	}

	res, err := router.Evaluate("/app/profile?tab=1", guardactor.Snapshot{"auth": false})
	if err != nil {
		return nil, err
	}
	fmt.Println(res.Redirect, res.Rule, res.Guard)

	// Server side: guards run per request with its context; a redirect is a 303.
	mw, err := guardactor.NewMiddleware(router, []guardactor.Guard{
		guardactor.GuardFunc("auth", func(ctx context.Context) (bool, error) { return signedIn(ctx), nil }),
	})
	if err != nil {
		return nil, err
	}
	return mw.Wrap(mux), nil // serve it: http.ListenAndServe(addr, handler)
}

func actorMessages(ctx context.Context, logger *zap.Logger) error {
	system := actors.NewSystem(logger) // protoactor's own logs go into zap
	defer system.Shutdown()
	store := persistence.NewMemory() // or persistence.OpenBadger(dir)
	defer store.Close()
	pid := system.Root.Spawn(actors.NewAuthStoreProps(store))
	defer func() { _ = actors.StopAndWait(ctx, system, pid) }()

	// A channel subscription; SubscribeAuth{PID: myActor} delivers to an actor instead.
	sub, err := actors.AskAs[*messages.AuthSubscription](ctx, system, pid, &messages.SubscribeAuth{})
	if err != nil {
		return err
	}
	fmt.Println(<-sub.C)

	_, err = actors.AskAs[*messages.SavedAuth](ctx, system, pid, &messages.SaveAuth{
		Record: messages.AuthRecord{UID: "alice", AccessToken: "a-token", RefreshToken: "r-token"}, MakeCurrent: true,
	})
	if err != nil {
		return err
	}
	cur, err := actors.AskAs[*messages.CurrentAuth](ctx, system, pid, &messages.GetCurrentAuth{})
	if err != nil {
		return err
	}
	fmt.Println(cur.Record.UID, cur.Record.AccessToken, <-sub.C)
	return nil
}

func embed(ctx context.Context, refresher pigeon.RefreshTokenManager, logger *zap.Logger, myTransport http.RoundTripper) error {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
		return actors.SlogFor(logger).With("system", s.ID) // protoactor's logs into your zap logger
	}))
	defer system.Shutdown() // runs last: pigeon's actors are stopped by then

	p, err := pigeon.NewAuthorized(refresher,
		pigeon.WithActorSystem(system),
		pigeon.WithLogger(logger),
		pigeon.WithInMemoryStore(), // or WithStoreDir: one directory per process
		pigeon.WithHTTPClient(&http.Client{Transport: myTransport, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return err
	}
	defer p.Close() // runs first: stops pigeon's actors and goroutines; your system keeps running

	_, err = p.CurrentAuth(ctx)
	fmt.Println(errors.Is(err, pigeon.ErrNoAuth))
	return nil
}

// exampleBackend starts the example backend with the user
// alice@example.com / secret and returns it, its base URL, alice's tokens
// and its stop function.
func exampleBackend() (*backend.Backend, string, backend.Tokens, func()) {
	b := backend.New()
	srv := httptest.NewServer(b)
	stop := func() { srv.CloseClientConnections(); b.Close(); srv.Close() }
	tok, err := b.CreateUser("alice@example.com", "secret")
	if err != nil {
		stop()
		panic(err)
	}
	return b, srv.URL, tok, stop
}

// withAlice runs f against the example backend with a client (tokens in
// memory) on which alice is signed in, and prints the error that stopped it.
func withAlice(f func(ctx context.Context, b *backend.Backend, baseURL string, p *pigeon.AuthorizedPigeon) error) {
	b, base, tok, stop := exampleBackend()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
		pigeon.WithBaseURL(base), pigeon.WithInMemoryStore())
	if err == nil {
		defer p.Close()
		err = p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: tok.UID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken})
	}
	if err == nil {
		err = f(ctx, b, base, p)
	}
	if err != nil {
		fmt.Println(err)
	}
}

// The README's "Quick start: the facade", against the example backend with
// an encrypted badger store in a temporary directory.
func ExampleNewAuthorized_quickStart() {
	_, base, _, stop := exampleBackend()
	defer stop()
	tmp, err := os.MkdirTemp("", "pigeon-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := quickStart(ctx, base, filepath.Join(tmp, "store"), zap.NewNop()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// Unauthenticated
	// Authenticated
	// signed in as alice@example.com
	// status 404
	// Unauthenticated
}

// The README's "Plug pigeon's auth into another SDK".
func ExampleAuthorizedPigeon_HTTPClient() {
	withAlice(func(ctx context.Context, _ *backend.Backend, base string, p *pigeon.AuthorizedPigeon) error {
		return useHTTPClient(ctx, p, base)
	})
	// Output:
	// GET /me: 200
}

// The README's "Sockets", over a real websocket to the example backend.
func ExampleAuthorizedPigeon_SocketInit() {
	withAlice(func(ctx context.Context, _ *backend.Backend, base string, p *pigeon.AuthorizedPigeon) error {
		return sockets(ctx, p, "ws"+strings.TrimPrefix(base, "http")+"/ws")
	})
	// Output:
	// message hi
	// message anyone?
}

// The README's "Ghost and Switch".
func ExampleNewSwitch() {
	withAlice(func(ctx context.Context, b *backend.Backend, base string, p *pigeon.AuthorizedPigeon) error {
		ghost, err := b.RegisterGhost("casper")
		if err != nil {
			return err
		}
		return ghostAndSwitch(ctx, p, base, ghost.Token)
	})
	// Output:
	// authorized
	// ghost
	// 200
}

// The README's "Route guards": the evaluator, then the middleware serving
// a request.
func Example_routeGuards() {
	mux := http.NewServeMux()
	mux.HandleFunc("/app/profile", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "profile") })
	handler, err := routeGuards(func(context.Context) bool { return false }, mux)
	if err != nil {
		fmt.Println(err)
		return
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app/profile", nil))
	fmt.Println(rec.Code, rec.Header().Get("Location"))
	// Output:
	// /login?continue=%2Fapp%2Fprofile%3Ftab%3D1 blocked auth
	// 303 /login?continue=%2Fapp%2Fprofile
}

// The README's "Quick start: messages to the actors".
func Example_actorMessages() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := actorMessages(ctx, nil); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {Unauthenticated }
	// alice [REDACTED] {Authenticated alice}
}

// The README's "Quick start: embedding in a service".
func ExampleWithActorSystem() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := embed(ctx, pigeon.JSONRefresher{Path: "/auth/refresh"}, zap.NewNop(), http.DefaultTransport); err != nil {
		fmt.Println(err)
	}
	// Output:
	// true
}

// TestREADME_OneStoreDirPerProcess: what the README says of the store — a
// second client on a store directory that is open fails with an error
// matching persistence.ErrLocked, and one client holds many accounts.
func TestREADME_OneStoreDirPerProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	open := func() (*pigeon.AuthorizedPigeon, error) {
		return pigeon.NewAuthorized(pigeon.JSONRefresher{Path: "/auth/refresh"},
			pigeon.WithBaseURL("https://api.example.com"), pigeon.WithStoreDir(dir))
	}
	p, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if second, err := open(); !errors.Is(err, persistence.ErrLocked) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second NewAuthorized on an open directory = %v, want ErrLocked", err)
	}

	ctx := t.Context()
	for _, uid := range []string{"alice", "bob"} {
		if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: uid, AccessToken: "a-" + uid, RefreshToken: "r-" + uid}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := p.AllAuths(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("AllAuths = %d records, %v; want 2", len(all), err)
	}
}
