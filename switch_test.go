package pigeon_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/apppigeon/pigeon"
)

func newGhost(t *testing.T, e *env) *pigeon.GhostPigeon {
	t.Helper()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(e.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func echoUID(t *testing.T, r *pigeon.Response) string {
	t.Helper()
	var ans struct{ Data struct{ UID string } }
	if err := json.Unmarshal(r.Body, &ans); err != nil {
		t.Fatalf("echo answer %q: %v", r.Body, err)
	}
	return ans.Data.UID
}

func TestSwitch_UseRoutesAndAnnounces(t *testing.T) {
	e := newEnv(t, envConfig{})
	tok := e.login("sw@example.com")
	g := newGhost(t, e)
	s, err := pigeon.NewSwitch(e.p, g)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t)
	if s.Mode() != pigeon.ModeAuthorized {
		t.Fatalf("initial mode = %v, want authorized (signed in)", s.Mode())
	}
	modes, err := s.SubscribeMode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := <-modes; m != pigeon.ModeAuthorized {
		t.Fatalf("first mode = %v", m)
	}
	var app pigeon.AppPigeon = s // one reference across the change
	r, err := app.Get(ctx, "/echo")
	if err != nil || echoUID(t, r) != tok.UID {
		t.Fatalf("authorized get: %v", err)
	}
	if err := s.Use(ctx, pigeon.ModeGhost); err != nil {
		t.Fatal(err)
	}
	if m := <-modes; m != pigeon.ModeGhost || s.Mode() != pigeon.ModeGhost {
		t.Fatalf("after Use: event %v, Mode %v", m, s.Mode())
	}
	// the ghost has no bearer: /echo refuses it, /public/echo serves it
	var se *pigeon.StatusError
	if _, err := app.Get(ctx, "/echo"); !errors.As(err, &se) || se.Response.StatusCode != 401 {
		t.Fatalf("ghost /echo: %v", err)
	}
	if _, err := app.Get(ctx, "/public/echo"); err != nil {
		t.Fatal(err)
	}
	if s.Active() != pigeon.AppPigeon(g) {
		t.Fatal("Active is not the ghost")
	}
	if err := s.Use(ctx, pigeon.Mode(7)); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestSwitch_FollowsAuthStream(t *testing.T) {
	e := newEnv(t, envConfig{})
	g := newGhost(t, e)
	s, err := pigeon.NewSwitch(e.p, g, pigeon.WithFollowAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t)
	modes, err := s.SubscribeMode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := <-modes; m != pigeon.ModeGhost {
		t.Fatalf("signed out: %v", m)
	}
	e.login("follow@example.com")
	if m := <-modes; m != pigeon.ModeAuthorized {
		t.Fatalf("after login: %v", m)
	}
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	if m := <-modes; m != pigeon.ModeGhost {
		t.Fatalf("after logout: %v", m)
	}
}

func TestSwitch_CloseClosesBoth(t *testing.T) {
	e := newEnv(t, envConfig{})
	g := newGhost(t, e)
	s, err := pigeon.NewSwitch(e.p, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	ctx := context.Background()
	if _, err := e.p.Get(ctx, "/echo"); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("authorized after Close: %v", err)
	}
	if _, err := g.Get(ctx, "/public/echo"); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("ghost after Close: %v", err)
	}
	if err := s.Use(ctx, pigeon.ModeGhost); !errors.Is(err, pigeon.ErrClosed) {
		t.Fatalf("Use after Close: %v", err)
	}
}

// With WithFollowAuth, a Use right after NewSwitch stands: the auth
// stream's first value (the status at subscription time, not a change) does
// not undo it; a later real change still moves the mode.
func TestSwitch_UseRightAfterNewSwitchStands(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.login("stand@example.com")
	g := newGhost(t, e)
	s, err := pigeon.NewSwitch(e.p, g, pigeon.WithFollowAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t)
	if err := s.Use(ctx, pigeon.ModeGhost); err != nil {
		t.Fatal(err)
	}
	// The switch subscribed to the auth store before NewSwitch returned,
	// so the store has sent it the first status before it answers this;
	// SubscribeMode's first value then comes after that status.
	if _, err := e.p.CurrentAuth(ctx); err != nil {
		t.Fatal(err)
	}
	modes, err := s.SubscribeMode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, ctx, modes); m != pigeon.ModeGhost {
		t.Fatalf("after Use(ModeGhost) and the first auth status: %v", m)
	}
	if err := e.p.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	e.login("stand2@example.com")
	if m := recv(t, ctx, modes); m != pigeon.ModeAuthorized {
		t.Fatalf("after a new login: %v", m)
	}
}
