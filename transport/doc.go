// Package transport holds pigeon's HTTP auth layer: an http.RoundTripper
// that attaches the current account's bearer token, reports refused tokens
// to the refresh coordinator, waits for the new token and replays the
// request once. Like golang.org/x/oauth2's Transport it is a plain
// RoundTripper, usable by any http.Client.
//
// Subpackages: wire (websocket codecs, pigeon.v1 and socket.io v4) and ws
// (websocket dialing, pumps and backoff).
package transport
