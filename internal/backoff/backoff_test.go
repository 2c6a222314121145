package backoff_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apppigeon/pigeon/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Full jitter: attempt n draws from [0, min(Max, Base·2ⁿ)); the source is
// asked for exactly that bound, and Top is the first step at Max.
func TestBackoff_FullJitterCaps(t *testing.T) {
	var asked []time.Duration
	b := backoff.New(time.Second, 5*time.Second, func(n int64) int64 { asked = append(asked, time.Duration(n)); return n - 1 })
	var got []time.Duration
	for n := range 5 {
		got = append(got, b.Delay(n))
	}
	wantCaps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(asked, wantCaps) {
		t.Fatalf("bounds asked %v, want %v", asked, wantCaps)
	}
	for i, d := range got {
		if d != wantCaps[i]-1 {
			t.Fatalf("delay %d = %v, want %v", i, d, wantCaps[i]-1)
		}
	}
	if top := b.Top(); top != 3 || b.Cap(top) != b.Max() || b.Cap(top-1) == b.Max() {
		t.Fatalf("Top %d (cap %v), want 3, the first step at %v", top, b.Cap(top), b.Max())
	}
	if d := backoff.New(0, 0, nil).Delay(4); d != 0 {
		t.Fatalf("zero base: delay %v, want 0", d)
	}
	if c := backoff.New(2*time.Second, time.Second, nil).Cap(0); c != 2*time.Second {
		t.Fatalf("max below base: cap %v, want the base", c)
	}
}

// A seeded source gives the same delays; the real one spreads them.
func TestBackoff_SeededAndSpread(t *testing.T) {
	x := backoff.New(time.Second, time.Minute, backoff.FromRand(rand.New(rand.NewPCG(3, 3))))
	y := backoff.New(time.Second, time.Minute, backoff.FromRand(rand.New(rand.NewPCG(3, 3))))
	seen := map[time.Duration]bool{}
	r := backoff.New(time.Second, time.Second, nil)
	for i := range 200 {
		if x.Delay(i%8) != y.Delay(i%8) {
			t.Fatal("same seed, different delays")
		}
		d := r.Delay(0)
		if d < 0 || d >= time.Second {
			t.Fatalf("delay %v outside [0, 1s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 150 {
		t.Fatalf("only %d distinct delays in 200", len(seen))
	}
}
