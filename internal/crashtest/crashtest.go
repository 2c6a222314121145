//go:build unix

// Package crashtest runs the writer process of a kill -9 crash test: the
// test binary run again as one of its own tests, printing "synced <writer>
// <n>" after each write it had acknowledged, and killed with SIGKILL.
// Tests only; not safe for concurrent use by one test.
package crashtest

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Writer describes the writer process.
type Writer struct {
	Test    string   // the test function that writes, e.g. "TestCrashChild"
	Env     []string // added to the environment, e.g. "X_DIR=/tmp/…"
	Writers int      // writer numbers are 0 .. Writers-1
	// Pause, when set, is how long to let the writers go on after the
	// target was reached, given the mean time between acknowledgements
	// so far: it picks the moment of the kill (nothing waits on it for
	// correctness). nil kills at once (the writers keep going while the
	// lines are read, so the kill still lands at no particular point).
	Pause func(perAck time.Duration) time.Duration
}

// RunAndKill starts w, waits until it has acknowledged target writes (all
// writers together), kills it with SIGKILL and returns the last n each
// writer acknowledged (lines still in the pipe included; 0 for none). It
// fails t if the process died before, or printed lines out of order.
func RunAndKill(t testing.TB, w Writer, target int) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+w.Test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), w.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := make([]int, w.Writers)
	seen := 0
	var first, last time.Time // when the first and the latest acknowledgement arrived
	read := func(stopAt int) {
		for seen < stopAt && sc.Scan() {
			var i, n int
			if _, err := fmt.Sscanf(sc.Text(), "synced %d %d", &i, &n); err != nil {
				continue
			}
			if i < 0 || i >= w.Writers || n <= acked[i] {
				t.Errorf("writer line %q out of order (writer acknowledged %d before)", sc.Text(), acked[min(max(i, 0), w.Writers-1)])
				continue
			}
			acked[i], seen, last = n, seen+1, time.Now()
			if seen == 1 {
				first = last
			}
		}
	}
	read(target)
	if w.Pause != nil {
		time.Sleep(w.Pause(last.Sub(first) / time.Duration(max(seen-1, 1))))
	}
	killErr := cmd.Process.Kill() // SIGKILL
	read(int(^uint(0) >> 1))      // drain to EOF: lines written before the kill
	waitErr := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if killErr != nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer was not killed (kill: %v, wait: %v) after %d of %d acknowledgements; stdout scan error %v; stderr:\n%s",
			killErr, waitErr, seen, target, sc.Err(), stderr.String())
	}
	if seen < target {
		t.Fatalf("writers acknowledged %d of %d writes before dying; stderr:\n%s", seen, target, stderr.String())
	}
	return acked
}

// NewRand returns a random source for the kill moments, its seed logged
// to t so a failure can be replayed.
func NewRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed>>1))
}

// Tally follows what a store holds across kills.
type Tally struct {
	stored []int // each writer's iteration in the store after the last kill
	// InFlight counts writes in flight at a kill that had committed;
	// Total, the iterations stored in all.
	InFlight, Total int
}

// NewTally starts a tally of writers writers, none stored.
func NewTally(writers int) *Tally { return &Tally{stored: make([]int, writers)} }

// After checks what the store holds after a kill (iters, one per writer)
// against what the writers acknowledged before it (acked): each writer's
// iteration must be the last one it acknowledged (or, if it acknowledged
// none in this run, the one stored before), or the next one (in flight at
// the kill: it may or may not have committed). It returns an error naming
// the writer that broke this.
func (t *Tally) After(acked, iters []int) error {
	for w, n := range iters {
		floor := max(acked[w], t.stored[w])
		if n != floor && n != floor+1 {
			return fmt.Errorf("writer %d: store holds iteration %d; acknowledged %d, stored before %d (want %d or %d)",
				w, n, acked[w], t.stored[w], floor, floor+1)
		}
		if n == floor+1 {
			t.InFlight++
		}
		t.Total += n - t.stored[w]
	}
	t.stored = iters
	return nil
}

// Kills is how many kills a test runs: n, or short with -short.
func Kills(n, short int) int {
	if testing.Short() {
		return short
	}
	return n
}
