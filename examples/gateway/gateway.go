package main

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/apppigeon/pigeon"
)

// Gateway forwards /users/{uid}/{path...} to the backend as uid. client is
// an AuthorizedPigeon's HTTPClient(): one client, one connection pool, for
// every user.
type Gateway struct {
	client  *http.Client
	backend string // base URL, no trailing slash
	mux     *http.ServeMux
}

// NewGateway returns a gateway sending to backend with client.
func NewGateway(client *http.Client, backend string) *Gateway {
	g := &Gateway{client: client, backend: strings.TrimSuffix(backend, "/"), mux: http.NewServeMux()}
	g.mux.HandleFunc("/users/{uid}/{path...}", g.forward)
	return g
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// hopHeaders are not forwarded in either direction; Authorization from the
// caller is dropped too: the gateway's account decides it.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization"}

func (g *Gateway) forward(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	target := g.backend + "/" + r.PathValue("path")
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	ctx := pigeon.ContextWithAccount(r.Context(), uid)
	req, err := http.NewRequestWithContext(ctx, r.Method, target, r.Body)
	if err != nil {
		http.Error(w, "gateway: "+err.Error(), http.StatusBadRequest)
		return
	}
	req.ContentLength = r.ContentLength
	req.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	resp, err := g.client.Do(req)
	switch {
	case errors.Is(err, pigeon.ErrUnknownAccount):
		http.Error(w, "gateway: no such user "+uid, http.StatusNotFound)
		return
	case errors.Is(err, pigeon.ErrSessionExpired), errors.Is(err, pigeon.ErrLoggedOut):
		http.Error(w, "gateway: "+uid+" must sign in again", http.StatusUnauthorized)
		return
	case err != nil:
		http.Error(w, "gateway: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
