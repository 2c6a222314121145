package pigeon_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/apppigeon/pigeon"
)

// A *StatusError names the request (method, URL without its query) and the
// answer (status, the first bytes of the server's message).
func TestStatusError_SaysWhatWasAskedAndAnswered(t *testing.T) {
	long := strings.Repeat("x", 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/widgets/7":
			http.Error(w, "no widget 7 here\nsecond line", http.StatusNotFound)
		case "/big":
			http.Error(w, long, http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	g, err := pigeon.NewGhost(pigeon.WithBaseURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := ctxT(t)

	_, err = g.Delete(ctx, "/widgets/7?api_key=hunter2#frag")
	var se *pigeon.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("DELETE: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"DELETE", srv.URL + "/widgets/7", "404", "Not Found", "no widget 7 here second line"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	for _, never := range []string{"hunter2", "api_key", "frag"} {
		if strings.Contains(msg, never) {
			t.Errorf("message %q carries %q", msg, never)
		}
	}
	if se.Method != http.MethodDelete || se.URL != srv.URL+"/widgets/7" || se.Response.StatusCode != 404 {
		t.Errorf("fields: %q %q %d", se.Method, se.URL, se.Response.StatusCode)
	}

	_, err = g.Post(ctx, "/big", "x")
	if !errors.As(err, &se) {
		t.Fatalf("POST /big: %v", err)
	}
	if msg := err.Error(); len(msg) > 400 || !strings.HasSuffix(msg, "x…") || !strings.Contains(msg, "POST "+srv.URL+"/big: server answered 502") {
		t.Errorf("long body message (%d bytes): %q", len(msg), msg)
	}
	if _, err := g.Get(ctx, "/empty"); err == nil || !strings.HasSuffix(err.Error(), "418 I'm a teapot") {
		t.Errorf("empty body message: %v", err)
	}
}

// A request after the session ended matches ErrNoAuth (or, when it was
// the refresh's rejection that ended it, ErrSessionExpired) and still
// carries the server's 401.
func TestStatusError_AfterTheSessionEnded(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	ctx := ctxT(t)

	// Never signed in.
	_, err := e.p.Get(ctx, "/echo")
	assertRefused401(t, "signed out", err, pigeon.ErrNoAuth)

	// Signed in; the server forgets the access token and refuses the
	// refresh token: this request is the one that ends the session.
	tok := e.login("ended@example.com")
	e.be.RevokeAccessToken(tok.AccessToken)
	e.be.RevokeRefreshToken(tok.RefreshToken)
	_, err = e.p.Get(ctx, "/echo")
	assertRefused401(t, "refresh rejected", err, pigeon.ErrSessionExpired)

	// After it.
	_, err = e.p.Get(ctx, "/echo")
	assertRefused401(t, "after the session ended", err, pigeon.ErrNoAuth)
}

func assertRefused401(t *testing.T, what string, err, want error) {
	t.Helper()
	var se *pigeon.StatusError
	if !errors.Is(err, want) || !errors.As(err, &se) || se.Response.StatusCode != http.StatusUnauthorized {
		t.Errorf("%s: want %v carrying a 401 *StatusError, got %v", what, want, err)
	}
}

// SwitchAccount and RemoveAccount of a UID the store does not hold fail
// with ErrUnknownAccount; RemoveAccount removes any account, current or
// not, and removing another account leaves the current one alone.
func TestAccounts_UnknownAndRemove(t *testing.T) {
	e := newEnv(t, envConfig{noClock: true})
	ctx := ctxT(t)
	if err := e.p.SwitchAccount(ctx, "nobody"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("SwitchAccount(nobody) = %v", err)
	}
	if err := e.p.RemoveAccount(ctx, "nobody"); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("RemoveAccount(nobody) = %v", err)
	}
	a := e.login("a@example.com")
	b := e.login("b@example.com") // current
	status, err := e.p.SubscribeAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := recv(t, ctx, status); s.State != pigeon.Authenticated || s.UID != b.UID {
		t.Fatalf("first status %+v", s)
	}

	if err := e.p.RemoveAccount(ctx, a.UID); err != nil {
		t.Fatalf("RemoveAccount(other): %v", err)
	}
	if cur, err := e.p.CurrentAuth(ctx); err != nil || cur.UID != b.UID {
		t.Fatalf("current after removing another: %+v %v", cur, err)
	}
	if r, err := e.p.Get(ctx, "/echo"); err != nil || echoUID(t, r) != b.UID {
		t.Fatalf("request after removing another: %v", err)
	}
	if err := e.p.SwitchAccount(ctx, a.UID); !errors.Is(err, pigeon.ErrUnknownAccount) {
		t.Fatalf("SwitchAccount(removed) = %v", err)
	}

	if err := e.p.RemoveAccount(ctx, b.UID); err != nil {
		t.Fatalf("RemoveAccount(current): %v", err)
	}
	if s := recv(t, ctx, status); s.State != pigeon.Unauthenticated {
		t.Fatalf("status after removing the current account: %+v", s)
	}
	if _, err := e.p.CurrentAuth(ctx); !errors.Is(err, pigeon.ErrNoAuth) {
		t.Fatalf("CurrentAuth after removing the current account: %v", err)
	}
	if all, err := e.p.AllAuths(ctx); err != nil || len(all) != 0 {
		t.Fatalf("AllAuths: %+v %v", all, err)
	}
}

// Close is the same on every client: the first call returns nil, every
// later call (Close included) ErrClosed.
func TestClose_SameOnEveryClient(t *testing.T) {
	clients := map[string]func(t *testing.T, e *env) pigeon.AppPigeon{
		"authorized": func(t *testing.T, e *env) pigeon.AppPigeon { return e.newClient() },
		"ghost":      func(t *testing.T, e *env) pigeon.AppPigeon { return newGhost(t, e) },
		"switch": func(t *testing.T, e *env) pigeon.AppPigeon {
			s, err := pigeon.NewSwitch(e.newClient(), newGhost(t, e))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range clients {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envConfig{noClock: true})
			p := open(t, e)
			ctx := context.Background()
			if err := p.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := p.Close(); !errors.Is(err, pigeon.ErrClosed) {
				t.Fatalf("second Close = %v", err)
			}
			if _, err := p.Get(ctx, "/public/echo"); !errors.Is(err, pigeon.ErrClosed) {
				t.Errorf("Get after Close = %v", err)
			}
			if _, err := p.HTTPClient().Get(e.srv.URL + "/public/echo"); !errors.Is(err, pigeon.ErrClosed) {
				t.Errorf("HTTPClient().Get after Close = %v", err)
			}
			if err := p.Emit(ctx, "x", nil); !errors.Is(err, pigeon.ErrClosed) && !errors.Is(err, pigeon.ErrSocketNotInitialized) {
				t.Errorf("Emit after Close = %v", err)
			}
		})
	}
}

// A bearer refused over plain http says which option allows it.
func TestInsecureRefusal_NamesTheOption(t *testing.T) {
	p, err := pigeon.NewAuthorized(pigeon.JSONRefresher{}, pigeon.WithInMemoryStore(), pigeon.WithBaseURL("http://192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxT(t)
	if err := p.SaveNewAuth(ctx, pigeon.SaveAuthParams{UID: "u", AccessToken: "t"}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Get(ctx, "/x")
	if !errors.Is(err, pigeon.ErrInsecureBearer) || !strings.Contains(err.Error(), "WithInsecureHTTP") {
		t.Fatalf("plain-http refusal = %v", err)
	}
}

// Every method that AuthorizedPigeon, GhostPigeon and Switch all have is on
// AppPigeon, so the interface cannot drift from the clients again.
func TestAppPigeon_HasEveryCommonMethod(t *testing.T) {
	iface := reflect.TypeFor[pigeon.AppPigeon]()
	types := []reflect.Type{
		reflect.TypeFor[*pigeon.AuthorizedPigeon](),
		reflect.TypeFor[*pigeon.GhostPigeon](),
		reflect.TypeFor[*pigeon.Switch](),
	}
	for i := range types[0].NumMethod() {
		m := types[0].Method(i)
		common := true
		for _, other := range types[1:] {
			om, ok := other.MethodByName(m.Name)
			if !ok || om.Type.NumIn() != m.Type.NumIn() {
				common = false
				break
			}
		}
		if !common {
			continue
		}
		im, ok := iface.MethodByName(m.Name)
		if !ok {
			t.Errorf("AppPigeon lacks %s, which every client has", m.Name)
			continue
		}
		if want := strings.TrimPrefix(m.Type.String(), "func(*pigeon.AuthorizedPigeon"); !strings.HasSuffix(want, strings.TrimPrefix(im.Type.String(), "func(")) {
			t.Errorf("AppPigeon.%s is %s, the clients' %s", m.Name, im.Type, m.Type)
		}
	}
}
