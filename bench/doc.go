// Package bench holds pigeon's benchmarks, each measured against its raw
// baseline in the same run (plain net/http, plain gorilla, a plain map,
// net/http.ServeMux). See README.md in this directory for the figures and
// the command that reproduces them.
package bench
