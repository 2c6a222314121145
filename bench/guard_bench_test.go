package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/actors"
	"github.com/apppigeon/pigeon/guardactor"
	"github.com/apppigeon/pigeon/messages"
)

const (
	guardSections = 50
	guardItems    = 19 // per section; section guardSections-1 has one fewer
)

// guardTree1000 builds exactly 1,000 routes: /login (the auth shield), 50
// sections /section{i} and 949 items /section{i}/item{j}/:id; odd sections
// are inside a GuardShell for "auth". It returns the router, the same
// patterns for net/http.ServeMux, and one location per item route.
func guardTree1000(b *testing.B) (*guardactor.Router, []string, []string) {
	b.Helper()
	nodes := []guardactor.Node{&guardactor.Route{Path: "login", Name: "login", ShieldOf: []string{"auth"}}}
	var guarded []guardactor.Node
	patterns := []string{"/login"}
	var locations []string
	count := 1
	for i := 0; i < guardSections; i++ {
		items := guardItems
		if i == guardSections-1 {
			items--
		}
		sec := &guardactor.Route{Path: fmt.Sprintf("section%d", i), Name: fmt.Sprintf("s%d", i)}
		patterns = append(patterns, fmt.Sprintf("/section%d", i))
		count++
		for j := 0; j < items; j++ {
			sec.Children = append(sec.Children, &guardactor.Route{Path: fmt.Sprintf("item%d/:id", j), Name: fmt.Sprintf("s%d-i%d", i, j)})
			patterns = append(patterns, fmt.Sprintf("/section%d/item%d/{id}", i, j))
			locations = append(locations, fmt.Sprintf("/section%d/item%d/%d", i, j, i*100+j))
			count++
		}
		if i%2 == 1 {
			guarded = append(guarded, sec)
		} else {
			nodes = append(nodes, sec)
		}
	}
	nodes = append(nodes, &guardactor.GuardShell{Guard: "auth", Children: guarded})
	if count != 1000 || len(patterns) != 1000 {
		b.Fatalf("tree has %d routes, %d patterns", count, len(patterns))
	}
	r, err := guardactor.New(nodes, []string{"auth"})
	if err != nil {
		b.Fatal(err)
	}
	return r, patterns, locations
}

// BenchmarkGuardResolve compares one resolution on the 1,000-route tree
// (all guards pass: no redirect) with net/http.ServeMux matching the same
// 1,000 patterns (mux.Handler). Goal: guardactor <= 3x servemux.
func BenchmarkGuardResolve(b *testing.B) {
	router, patterns, locations := guardTree1000(b)
	snap := guardactor.Snapshot{"auth": true}
	b.Run("guardactor", func(b *testing.B) {
		for _, l := range locations { // sanity: every location resolves, no redirect
			if res, err := router.Evaluate(l, snap); err != nil || res.NotFound || res.Redirected() {
				b.Fatalf("%s: %+v %v", l, res, err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := router.Evaluate(locations[i%len(locations)], snap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("servemux", func(b *testing.B) {
		mux := http.NewServeMux()
		h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		for _, p := range patterns {
			mux.Handle(p, h)
		}
		reqs := make([]*http.Request, len(locations))
		for i, l := range locations {
			reqs[i], _ = http.NewRequest(http.MethodGet, "http://example.com"+l, nil)
			if _, p := mux.Handler(reqs[i]); p == "" {
				b.Fatalf("%s: no pattern", l)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			mux.Handler(reqs[i%len(reqs)])
		}
	})
}

// BenchmarkGuardResolveRedirect measures a resolution that redirects (auth
// blocks: shield with stored continue) on the same tree.
func BenchmarkGuardResolveRedirect(b *testing.B) {
	router, _, _ := guardTree1000(b)
	snap := guardactor.Snapshot{"auth": false}
	const loc = "/section7/item3/42"
	if res, err := router.Evaluate(loc, snap); err != nil || res.Redirect != "/login?continue=%2Fsection7%2Fitem3%2F42" {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := router.Evaluate(loc, snap); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardActorNavigate measures a Navigate round trip through the
// guard actor (actors.Ask) on the same tree.
func BenchmarkGuardActorNavigate(b *testing.B) {
	router, _, locations := guardTree1000(b)
	sys := actors.NewSystem(nil, actors.WithDeadLetterThrottle(time.Millisecond))
	defer sys.Shutdown()
	props, err := guardactor.NewProps(router, guardactor.WithInitialStates(guardactor.Snapshot{"auth": true}))
	if err != nil {
		b.Fatal(err)
	}
	pid := sys.Root.Spawn(props)
	defer func() { _ = actors.StopAndWait(context.Background(), sys, pid) }()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := actors.AskAs[*messages.Navigated](ctx, sys, pid, &messages.Navigate{Location: locations[i%len(locations)]})
		if err != nil || n.NotFound {
			b.Fatalf("%+v %v", n, err)
		}
	}
}
