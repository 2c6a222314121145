package backend

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/transport/ws/wstest"
)

// newFakeClock returns an injected clock that moves only when told to
// (wstest's fake clock: Now and Advance).
func newFakeClock() *wstest.Clock {
	return wstest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// newServer starts the backend on a real httptest server. Cleanup closes the
// backend first (ending websockets and hooked requests), then the server.
func newServer(t testing.TB, opts ...Option) (*Backend, *httptest.Server) {
	t.Helper()
	b := New(opts...)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	t.Cleanup(b.Close)
	return b, srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// data decodes the `data` member of the answer into v.
func (r response) data(t testing.TB, v any) {
	t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Data == nil {
		t.Fatalf("answer %d %q has no data: %v", r.status, r.body, err)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		t.Fatalf("decode data %q: %v", env.Data, err)
	}
}

// errCode returns the `error.code` of the answer.
func (r response) errCode(t testing.TB) string {
	t.Helper()
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("answer %d %q is not an error: %v", r.status, r.body, err)
	}
	return env.Error.Code
}

// call sends one request; body is JSON-encoded unless it is a string or nil.
func call(t testing.TB, srv *httptest.Server, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(v)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

func signup(t testing.TB, srv *httptest.Server, email string) Tokens {
	t.Helper()
	r := call(t, srv, "POST", "/auth/signup", "", map[string]string{"email": email, "password": "pw-" + email})
	if r.status != http.StatusCreated {
		t.Fatalf("signup %s: %d %s", email, r.status, r.body)
	}
	var tok Tokens
	r.data(t, &tok)
	return tok
}
