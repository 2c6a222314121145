package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// TestContract_Apply runs the same Apply table against every Store
// implementation: setup changes first, then the change under test; on an
// error the state must be exactly the state after setup (atomicity).
func TestContract_Apply(t *testing.T) {
	a1, a2, b1, c1 := rec("alice", 1), rec("alice", 2), rec("bob", 1), rec("carol", 1)
	bare := messages.AuthRecord{UID: "bare", AccessToken: "x"} // zero times, nil Data
	aliceCurrent := Change{Put: []messages.AuthRecord{a1, b1}, SetCurrent: strp("alice")}
	cases := []struct {
		name    string
		setup   []Change
		change  Change
		wantErr error
		want    State
	}{
		{name: "put into empty store",
			change: Change{Put: []messages.AuthRecord{b1, a1}},
			want:   State{Records: []messages.AuthRecord{a1, b1}}},
		{name: "put replaces a record by UID",
			setup:  []Change{{Put: []messages.AuthRecord{a1, b1}}},
			change: Change{Put: []messages.AuthRecord{a2}},
			want:   State{Records: []messages.AuthRecord{a2, b1}}},
		{name: "last put of a UID in one change wins",
			change: Change{Put: []messages.AuthRecord{a1, a2}},
			want:   State{Records: []messages.AuthRecord{a2}}},
		{name: "record with zero times and nil Data",
			change: Change{Put: []messages.AuthRecord{bare}},
			want:   State{Records: []messages.AuthRecord{bare}}},
		{name: "delete removes a record",
			setup:  []Change{{Put: []messages.AuthRecord{a1, b1}}},
			change: Change{Delete: []string{"alice"}},
			want:   State{Records: []messages.AuthRecord{b1}}},
		{name: "delete of an unknown UID is a no-op",
			setup:  []Change{aliceCurrent},
			change: Change{Delete: []string{"nobody"}},
			want:   State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "set current to a stored account",
			setup:  []Change{{Put: []messages.AuthRecord{a1, b1}}},
			change: Change{SetCurrent: strp("bob")},
			want:   State{Records: []messages.AuthRecord{a1, b1}, Current: "bob"}},
		{name: "set current to an account put in the same change",
			change: Change{Put: []messages.AuthRecord{c1}, SetCurrent: strp("carol")},
			want:   State{Records: []messages.AuthRecord{c1}, Current: "carol"}},
		{name: "set current to empty clears it",
			setup:  []Change{aliceCurrent},
			change: Change{SetCurrent: strp("")},
			want:   State{Records: []messages.AuthRecord{a1, b1}}},
		{name: "nil SetCurrent keeps the current account",
			setup:  []Change{aliceCurrent},
			change: Change{Put: []messages.AuthRecord{a2, c1}, Delete: []string{"bob"}},
			want:   State{Records: []messages.AuthRecord{a2, c1}, Current: "alice"}},
		{name: "deleting the current account clears it",
			setup:  []Change{aliceCurrent},
			change: Change{Delete: []string{"alice"}},
			want:   State{Records: []messages.AuthRecord{b1}}},
		{name: "delete the current account and switch to another",
			setup:  []Change{aliceCurrent},
			change: Change{Delete: []string{"alice"}, SetCurrent: strp("bob")},
			want:   State{Records: []messages.AuthRecord{b1}, Current: "bob"}},
		{name: "empty change is a no-op",
			setup:  []Change{aliceCurrent},
			change: Change{},
			want:   State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "unknown current account: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{a2, c1}, Delete: []string{"bob"}, SetCurrent: strp("nobody")},
			wantErr: ErrUnknownAccount,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "current set to an account deleted in the same change: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{c1}, Delete: []string{"bob"}, SetCurrent: strp("bob")},
			wantErr: ErrUnknownAccount,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "empty UID in Put: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{c1, {AccessToken: "x"}}},
			wantErr: ErrInvalidChange,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "empty UID in Delete: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{c1}, Delete: []string{""}},
			wantErr: ErrInvalidChange,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "UID both put and deleted: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{a2}, Delete: []string{"alice"}},
			wantErr: ErrInvalidChange,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
		{name: "time outside years 0-9999: error, nothing written",
			setup:   []Change{aliceCurrent},
			change:  Change{Put: []messages.AuthRecord{c1, {UID: "far", ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
			wantErr: ErrInvalidChange,
			want:    State{Records: []messages.AuthRecord{a1, b1}, Current: "alice"}},
	}
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := f.open(t)
					for _, ch := range tc.setup {
						mustApply(t, s, ch)
					}
					err := s.Apply(context.Background(), tc.change)
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("Apply error = %v, want %v", err, tc.wantErr)
					}
					if d := diffState(mustLoad(t, s), tc.want); d != "" {
						t.Errorf("state after Apply:\n%s", d)
					}
				})
			}
		})
	}
}

// TestContract_Closed: Close is idempotent and Load/Apply after Close
// return messages.ErrClosed.
func TestContract_Closed(t *testing.T) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			mustApply(t, s, Change{Put: []messages.AuthRecord{rec("alice", 1)}})
			if err := s.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := s.Load(context.Background()); !errors.Is(err, messages.ErrClosed) {
				t.Errorf("Load after Close = %v, want ErrClosed", err)
			}
			if err := s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("bob", 1)}}); !errors.Is(err, messages.ErrClosed) {
				t.Errorf("Apply after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestContract_DeepCopies: changing what went into Apply or came out of
// Load does not change the store.
func TestContract_DeepCopies(t *testing.T) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			in := rec("alice", 1)
			want := State{Records: []messages.AuthRecord{in.Clone()}}
			mustApply(t, s, Change{Put: []messages.AuthRecord{in}})
			in.Data[0] = 'X'
			out := mustLoad(t, s)
			out.Records[0].Data[0] = 'Y'
			out.Records[0].AccessToken = "changed"
			if d := diffState(mustLoad(t, s), want); d != "" {
				t.Errorf("store changed through a caller's copy:\n%s", d)
			}
		})
	}
}

// TestContract_CanceledContext: a done context fails Load and Apply and
// writes nothing.
func TestContract_CanceledContext(t *testing.T) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.Apply(ctx, Change{Put: []messages.AuthRecord{rec("alice", 1)}}); !errors.Is(err, context.Canceled) {
				t.Errorf("Apply = %v, want context.Canceled", err)
			}
			if _, err := s.Load(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Load = %v, want context.Canceled", err)
			}
			if d := diffState(mustLoad(t, s), State{}); d != "" {
				t.Errorf("canceled Apply wrote:\n%s", d)
			}
		})
	}
}

// TestStress_ApplyLoadWhileClosing races writers and readers with Close.
// Every call returns nil or messages.ErrClosed, every Load sees a
// consistent state (all records of one iteration, current among them),
// and nothing is left running (goleak).
func TestStress_ApplyLoadWhileClosing(t *testing.T) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			started := make(chan struct{}, 4)
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ready := sync.OnceFunc(func() { started <- struct{}{} })
					defer ready()
					for n := 0; ; n++ {
						uid := []string{"alice", "bob"}[w]
						err := s.Apply(ctx, Change{Put: []messages.AuthRecord{rec(uid, n)}, SetCurrent: strp(uid)})
						if n == 5 {
							ready()
						}
						if errors.Is(err, messages.ErrClosed) {
							return
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ready := sync.OnceFunc(func() { started <- struct{}{} })
					defer ready()
					for n := 0; ; n++ {
						st, err := s.Load(ctx)
						if n == 5 {
							ready()
						}
						if errors.Is(err, messages.ErrClosed) {
							return
						}
						if err != nil {
							errs <- err
							return
						}
						if st.Current != "" && st.Current != "alice" && st.Current != "bob" {
							errs <- errors.New("unexpected current " + st.Current)
							return
						}
						for _, r := range st.Records {
							var d struct{ N int }
							if err := json.Unmarshal(r.Data, &d); err != nil || string(r.AccessToken) != string(rec(r.UID, d.N).AccessToken) {
								errs <- errors.New("mixed record for " + r.UID)
								return
							}
						}
					}
				}()
			}
			for range 4 {
				<-started
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestContract_LoadPages: LoadPages (each store's own, and the function
// over a Store that has none) streams the same state Load returns, in
// pages of the size asked for; an error from page stops it and comes back
// as is; a done context and a closed store fail it.
func TestContract_LoadPages(t *testing.T) {
	var all []messages.AuthRecord
	for _, uid := range []string{"a", "b", "c", "d", "e"} {
		all = append(all, rec(uid, 1))
	}
	type loadFunc func(s Store, ctx context.Context, size int, page func([]messages.AuthRecord) error) (string, error)
	loads := []struct {
		name string
		load loadFunc
	}{
		{"own", func(s Store, ctx context.Context, size int, page func([]messages.AuthRecord) error) (string, error) {
			return s.(PagedLoader).LoadPages(ctx, size, page)
		}},
		{"function over Load", func(s Store, ctx context.Context, size int, page func([]messages.AuthRecord) error) (string, error) {
			return LoadPages(ctx, struct{ Store }{s}, size, page) // hides LoadPages
		}},
	}
	for _, f := range factories() {
		for _, l := range loads {
			loadPages := l.load
			t.Run(f.name+"/"+l.name, func(t *testing.T) {
				s := f.open(t)
				mustApply(t, s, Change{Put: all, SetCurrent: strp("c")})
				ctx := context.Background()
				for _, tc := range []struct{ size, pages int }{{2, 3}, {5, 1}, {0, 1}, {100, 1}} {
					var got State
					n := 0
					cur, err := loadPages(s, ctx, tc.size, func(p []messages.AuthRecord) error {
						n++
						if tc.size > 0 && len(p) > tc.size {
							t.Errorf("size %d: page of %d", tc.size, len(p))
						}
						got.Records = append(got.Records, p...)
						return nil
					})
					if err != nil {
						t.Fatalf("size %d: %v", tc.size, err)
					}
					got.Current = cur
					if n != tc.pages {
						t.Errorf("size %d: %d pages, want %d", tc.size, n, tc.pages)
					}
					if d := diffState(got, State{Records: all, Current: "c"}); d != "" {
						t.Errorf("size %d:\n%s", tc.size, d)
					}
				}
				stop := errors.New("stop")
				n := 0
				if _, err := loadPages(s, ctx, 2, func([]messages.AuthRecord) error { n++; return stop }); err != stop || n != 1 {
					t.Errorf("page error: %v after %d pages, want it as is after 1", err, n)
				}
				canceled, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := loadPages(s, canceled, 2, func([]messages.AuthRecord) error { return nil }); !errors.Is(err, context.Canceled) {
					t.Errorf("canceled: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := loadPages(s, ctx, 2, func([]messages.AuthRecord) error { return nil }); !errors.Is(err, messages.ErrClosed) {
					t.Errorf("after Close: %v, want ErrClosed", err)
				}
			})
		}
	}
}

// TestContract_LoadPagesSnapshot: the pages and the current account come
// from the state when LoadPages began, although Applies commit while the
// first page is being handled.
func TestContract_LoadPagesSnapshot(t *testing.T) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			before := []messages.AuthRecord{rec("a", 1), rec("b", 1), rec("c", 1), rec("d", 1)}
			mustApply(t, s, Change{Put: before, SetCurrent: strp("d")})
			var got State
			cur, err := s.(PagedLoader).LoadPages(context.Background(), 1, func(p []messages.AuthRecord) error {
				if len(got.Records) == 0 {
					done := make(chan error, 1)
					go func() { // another goroutine: page must not call the store
						done <- s.Apply(context.Background(), Change{Put: []messages.AuthRecord{rec("c", 2), rec("e", 1)}, Delete: []string{"d"}})
					}()
					if err := <-done; err != nil {
						return err
					}
				}
				got.Records = append(got.Records, p...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got.Current = cur
			if d := diffState(got, State{Records: before, Current: "d"}); d != "" {
				t.Errorf("LoadPages during an Apply:\n%s", d)
			}
			after := State{Records: []messages.AuthRecord{rec("a", 1), rec("b", 1), rec("c", 2), rec("e", 1)}}
			if d := diffState(mustLoad(t, s), after); d != "" {
				t.Errorf("Load after:\n%s", d)
			}
		})
	}
}
