package guardactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/apppigeon/pigeon/guardactor"
)

// authTree is a small app: /login is the auth shield and is discarded once
// signed in (follow-up /home); /dashboard/:id and /home are protected.
func authTree(t *testing.T) *guardactor.Router {
	t.Helper()
	r, err := guardactor.New([]guardactor.Node{
		&guardactor.Route{Path: "login", Name: "login", ShieldOf: []string{"auth"}, DiscardedBy: []string{"auth"}},
		&guardactor.Route{Path: "about", Name: "about"},
		&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
			&guardactor.Route{Path: "home", Name: "home", FollowUp: []string{"auth"}},
			&guardactor.Route{Path: "dashboard/:id", Name: "dashboard"},
		}},
	}, []string{"auth"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pageServer serves every page with its own path as body, behind the
// middleware.
func pageServer(t *testing.T, mw *guardactor.Middleware) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "page "+r.URL.Path)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func TestMiddleware_RedirectsFollowedByRealClient(t *testing.T) {
	var signedIn atomic.Bool
	auth := guardactor.GuardFunc("auth", func(ctx context.Context) (bool, error) { return signedIn.Load(), nil })
	mw, err := guardactor.NewMiddleware(authTree(t), []guardactor.Guard{auth}, guardactor.WithMiddlewareLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := pageServer(t, mw)

	tests := []struct {
		name      string
		signedIn  bool
		path      string
		wantURL   string // final path+query after following redirects
		wantBody  string
		wantHops  int
		wantFirst int // status of the first response (no redirect following)
	}{
		{"blocked goes to shield with continue", false, "/dashboard/7", "/login?continue=%2Fdashboard%2F7", "page /login", 1, http.StatusSeeOther},
		{"unguarded page passes", false, "/about", "/about", "page /about", 0, http.StatusOK},
		{"shield stays while blocked", false, "/login?continue=%2Fdashboard%2F7", "/login?continue=%2Fdashboard%2F7", "page /login", 0, http.StatusOK},
		{"signed in passes", true, "/dashboard/7", "/dashboard/7", "page /dashboard/7", 0, http.StatusOK},
		{"signed in on discarded shield follows continue", true, "/login?continue=%2Fdashboard%2F7", "/dashboard/7", "page /dashboard/7", 1, http.StatusSeeOther},
		{"signed in on discarded shield goes to follow-up", true, "/login", "/home", "page /home", 1, http.StatusSeeOther},
		{"hostile continue is dropped", true, "/login?continue=https%3A%2F%2Fevil.example%2Fx", "/home", "page /home", 1, http.StatusSeeOther},
		{"protocol-relative continue is dropped", true, "/login?continue=%2F%2Fevil.example", "/home", "page /home", 1, http.StatusSeeOther},
		{"backslash continue is dropped", true, "/login?continue=%2F%5Cevil.example", "/home", "page /home", 1, http.StatusSeeOther},
		{"not found passes to next", false, "/nowhere", "/nowhere", "page /nowhere", 0, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signedIn.Store(tt.signedIn)
			hops := 0
			client := &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
				hops++
				if req.URL.Host != via[0].URL.Host {
					return fmt.Errorf("redirected off-site to %s", req.URL)
				}
				return nil
			}}
			resp, err := client.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Request.URL.RequestURI(); got != tt.wantURL {
				t.Errorf("final URL = %s, want %s", got, tt.wantURL)
			}
			if string(body) != tt.wantBody || resp.StatusCode != http.StatusOK {
				t.Errorf("final response = %d %q, want 200 %q", resp.StatusCode, body, tt.wantBody)
			}
			if hops != tt.wantHops {
				t.Errorf("hops = %d, want %d", hops, tt.wantHops)
			}
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			first, err := noFollow.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			first.Body.Close()
			if first.StatusCode != tt.wantFirst {
				t.Errorf("first status = %d, want %d", first.StatusCode, tt.wantFirst)
			}
		})
	}
}

func TestMiddleware_GuardFailureIsNeverAPass(t *testing.T) {
	tests := []struct {
		name  string
		check func(ctx context.Context) (bool, error)
	}{
		{"error", func(context.Context) (bool, error) { return true, errors.New("auth backend down") }},
		{"panic", func(context.Context) (bool, error) { panic("boom") }},
		{"timeout", func(ctx context.Context) (bool, error) { <-ctx.Done(); return true, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := guardactor.NewMiddleware(authTree(t), []guardactor.Guard{guardactor.GuardFunc("auth", tt.check)},
				guardactor.WithCheckTimeout(50*time.Millisecond), guardactor.WithMiddlewareLogger(zaptest.NewLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			srv := pageServer(t, mw)
			resp, err := http.Get(srv.URL + "/dashboard/1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status = %d %q, want 503", resp.StatusCode, body)
			}
		})
	}
}

func TestMiddleware_CustomErrorHandlerAndBadLocation(t *testing.T) {
	var gotErr atomic.Value
	mw, err := guardactor.NewMiddleware(authTree(t),
		[]guardactor.Guard{guardactor.GuardFunc("auth", func(context.Context) (bool, error) { return false, errors.New("down") })},
		guardactor.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			gotErr.Store(err)
			w.WriteHeader(http.StatusTeapot)
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := pageServer(t, mw)
	resp, err := http.Get(srv.URL + "/dashboard/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status = %d, want 418", resp.StatusCode)
	}
	if e, _ := gotErr.Load().(error); !errors.Is(e, guardactor.ErrGuardCheck) {
		t.Fatalf("handler error = %v, want ErrGuardCheck", e)
	}
	for _, p := range []string{"/dashboard/../login", "/%2E%2E/dashboard/1"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status = %d, want 400", p, resp.StatusCode)
		}
	}
}

func TestNewMiddleware_RequiresEveryGuard(t *testing.T) {
	if _, err := guardactor.NewMiddleware(authTree(t), nil); err == nil {
		t.Fatal("missing guard implementation accepted")
	}
	extra := guardactor.GuardFunc("other", func(context.Context) (bool, error) { return true, nil })
	if _, err := guardactor.NewMiddleware(authTree(t), []guardactor.Guard{extra}); !errors.Is(err, guardactor.ErrGuardNotRegistered) {
		t.Fatalf("err = %v, want ErrGuardNotRegistered", err)
	}
}
