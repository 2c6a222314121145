package guardactor_test

import (
	"fmt"

	"github.com/apppigeon/pigeon/guardactor"
)

func ExampleRouter_Evaluate() {
	router, err := guardactor.New([]guardactor.Node{
		&guardactor.Route{Path: "login", Name: "login", ShieldOf: []string{"auth"}, DiscardedBy: []string{"auth"}},
		&guardactor.GuardShell{Guard: "auth", Children: []guardactor.Node{
			&guardactor.Route{Path: "home", Name: "home", FollowUp: []string{"auth"}},
			&guardactor.Route{Path: "orders/:id", Name: "order"},
		}},
	}, []string{"auth"})
	if err != nil {
		fmt.Println(err)
		return
	}
	signedOut := guardactor.Snapshot{"auth": false}
	signedIn := guardactor.Snapshot{"auth": true}

	res, _ := router.Evaluate("/orders/7?tab=items", signedOut)
	fmt.Println(res.Redirect, res.Rule, res.Guard)

	res, _ = router.Evaluate("/login?continue=%2Forders%2F7%3Ftab%3Ditems", signedIn)
	fmt.Println(res.Redirect, res.Rule)

	res, _ = router.Evaluate("/login?continue=https%3A%2F%2Fevil.example", signedIn)
	fmt.Println(res.Redirect, res.Rule)
	// Output:
	// /login?continue=%2Forders%2F7%3Ftab%3Ditems blocked auth
	// /orders/7?tab=items discard
	// /home discard
}

func ExampleRouter_Settle() {
	router, _ := guardactor.New([]guardactor.Node{
		&guardactor.Route{Path: "a", Redirect: "/b"},
		&guardactor.Route{Path: "b", Redirect: "/a"},
	}, nil)
	_, err := router.Settle("/a", nil)
	fmt.Println(err)
	// Output:
	// pigeon/guardactor: redirect loop: /a -> /b -> /a
}
