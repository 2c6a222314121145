// Command tour walks through every pigeon feature against the embedded
// example backend and exits 0 when every step behaved as described:
//
//	go run ./examples/tour
package main
