// Package transport holds pigeon's HTTP auth layer: an http.RoundTripper
// that attaches the current account's bearer token, reports refused tokens
// to the refresh coordinator, waits for the new token and replays the
// request once. Like golang.org/x/oauth2's Transport it is a plain
// RoundTripper, usable by any http.Client.
//
// It does not modify the requests it is given, with one opt-in
// exception for requests built for a single call: Owned marks a request
// whose header map the Transport may set the bearer in (saving a copy of
// the map per request), and Bind gives such a request a context that ends
// with the Transport's lifetime without a cancellation of its own.
// pigeon's verbs use both; requests through HTTPClient() take the
// general path.
//
// Subpackages: wire (websocket codecs, pigeon.v1 and socket.io v4) and ws
// (websocket dialing, pumps and backoff).
package transport
