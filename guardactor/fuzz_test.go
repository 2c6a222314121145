package guardactor_test

import (
	"errors"
	"testing"

	"github.com/apppigeon/pigeon/guardactor"
)

// fuzzTree exercises every node kind: shells, params, aliases, explicit
// redirects, discard and follow-up routes.
func fuzzTree(t testing.TB) *guardactor.Router {
	r, err := guardactor.New([]guardactor.Node{
		&guardactor.Route{Path: "auth", Name: "auth", Children: []guardactor.Node{
			&guardactor.Route{Path: "login", Name: "login", ShieldOf: []string{"auth"}, DiscardedBy: []string{"auth"}, PathAliases: []string{"signin", "/in"}},
			&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
				&guardactor.Route{Path: "pin", Name: "pin", ShieldOf: []string{"pin"}, DiscardedBy: []string{"pin"}},
			}},
		}},
		&guardactor.Route{Path: "/", Name: "root", Plain: true, Redirect: "/app/dash"},
		&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
			&guardactor.GuardShell{Guard: "pin", Persistence: guardactor.PersistClear, Children: []guardactor.Node{
				&guardactor.Route{Path: "app", Name: "app", Children: []guardactor.Node{
					&guardactor.Route{Path: "dash", Name: "dash", FollowUp: []string{"auth", "pin"}},
					&guardactor.Route{Path: "u/:id", Name: "user", PathAliases: []string{"user/:id"}, Children: []guardactor.Node{
						&guardactor.Route{Path: "edit", Name: "edit", IgnoreAsContinueLocation: true},
					}},
					&guardactor.Route{Path: "old", Name: "old", Redirect: "/app/dash"},
				}},
			}},
			&guardactor.DiscardShell{Guard: "pin", Children: []guardactor.Node{
				&guardactor.Shell{Children: []guardactor.Node{&guardactor.Route{Path: "welcome/:step", Name: "welcome"}}},
			}},
		}},
		&guardactor.Route{Path: ":slug", Name: "page"},
	}, []string{"auth", "pin"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func FuzzEvaluate(f *testing.F) {
	f.Add("/app/dash", "", uint8(0), false)
	f.Add("/auth/login", "continue=%2Fapp%2Fu%2F7", uint8(3), false)
	f.Add("/auth/login", "continue=https%3A%2F%2Fevil.example", uint8(1), false)
	f.Add("/app/u/%5Cevil/edit", "x=1&continue=%2F%2Fevil", uint8(2), true)
	router := fuzzTree(f)
	f.Fuzz(func(t *testing.T, path, query string, bits uint8, neglect bool) {
		location := path
		if query != "" {
			location += "?" + query
		}
		snap := guardactor.Snapshot{"auth": bits&1 != 0, "pin": bits&2 != 0}
		res, err := router.Evaluate(location, snap, guardactor.NeglectContinue(neglect))
		if err != nil {
			if !errors.Is(err, guardactor.ErrInvalidLocation) && !errors.Is(err, guardactor.ErrMissingParam) {
				t.Fatalf("Evaluate(%q): unexpected error %v", location, err)
			}
			return
		}
		if res.Redirect != "" && !localRedirect(res.Redirect) {
			t.Fatalf("Evaluate(%q) = non-local redirect %q", location, res.Redirect)
		}
		s, err := router.Settle(location, snap, guardactor.NeglectContinue(neglect))
		if err != nil {
			if !errors.Is(err, guardactor.ErrRedirectLoop) && !errors.Is(err, guardactor.ErrInvalidLocation) && !errors.Is(err, guardactor.ErrMissingParam) {
				t.Fatalf("Settle(%q): unexpected error %v", location, err)
			}
			return
		}
		for _, h := range s.Hops {
			if !localRedirect(h.Redirect) {
				t.Fatalf("Settle(%q) hop to non-local %q", location, h.Redirect)
			}
		}
	})
}

// localRedirect is the fuzz property, written independently of
// IsLocalPath: a single leading '/', not "//" nor "/\".
func localRedirect(s string) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	return len(s) == 1 || (s[1] != '/' && s[1] != '\\')
}
