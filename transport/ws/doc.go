// Package ws holds pigeon's websocket plumbing around gorilla/websocket:
// Dial (headers, sub-protocols, handshake timeout, read limit), Pump (the
// one reader and one writer goroutine a connection may have), Backoff
// (capped exponential backoff with full jitter) and Clock (injectable time).
//
// # Concurrency
//
// gorilla allows one concurrent reader and one concurrent writer per
// connection. A Pump owns both: its reader goroutine stops on the first read
// error (gorilla read errors are permanent), its writer goroutine is the only
// writer and puts a deadline on every write. Close closes the connection
// exactly once and waits for both goroutines.
//
// # Testing
//
// Package wstest has a fake Clock whose timers fire only when a test
// advances it.
package ws
