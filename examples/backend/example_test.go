package backend_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/apppigeon/pigeon/examples/backend"
)

func ExampleNew() {
	b := backend.New()
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()

	tok, _ := b.CreateUser("ann@example.com", "secret")
	post := func(refresh string) int {
		res, err := http.Post(srv.URL+"/auth/refresh", "application/json",
			strings.NewReader(`{"refreshToken":"`+refresh+`"}`))
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	fmt.Println("first refresh:", post(tok.RefreshToken))
	fmt.Println("reuse:", post(tok.RefreshToken))
	fmt.Println("refresh calls:", b.Stats().RefreshCalls)
	// Output:
	// first refresh: 200
	// reuse: 401
	// refresh calls: 2
}
