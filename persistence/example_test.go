package persistence_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apppigeon/pigeon/messages"
	"github.com/apppigeon/pigeon/persistence"
)

// A MemoryStore for tests: save two accounts, make one current, switch.
func ExampleNewMemory() {
	ctx := context.Background()
	s := persistence.NewMemory()
	defer s.Close()

	alice := "alice"
	err := s.Apply(ctx, persistence.Change{
		Put: []messages.AuthRecord{
			{UID: "alice", AccessToken: "a1", RefreshToken: "r1"},
			{UID: "bob", AccessToken: "b1", RefreshToken: "s1"},
		},
		SetCurrent: &alice,
	})
	fmt.Println("save:", err)

	nobody := "nobody"
	err = s.Apply(ctx, persistence.Change{SetCurrent: &nobody})
	fmt.Println("switch to unknown:", err)

	st, _ := s.Load(ctx)
	for _, r := range st.Records {
		fmt.Println(r.UID, r.AccessToken) // tokens print redacted
	}
	fmt.Println("current:", st.Current)
	// Output:
	// save: <nil>
	// switch to unknown: pigeon/persistence: unknown account: cannot make "nobody" current: no such account
	// alice [REDACTED]
	// bob [REDACTED]
	// current: alice
}

// An encrypted store on disk. Without WithEncryptionKey or PIGEON_STORE_KEY
// the key is generated into "<dir>.key" beside the data directory.
func ExampleOpenBadger() {
	root, err := os.MkdirTemp("", "pigeon-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(root)
	dir := filepath.Join(root, "store") // real programs: persistence.DefaultDir("")

	s, err := persistence.OpenBadger(dir, persistence.WithGetenv(func(string) string { return "" }))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	uid := "alice"
	// One transaction, synced to disk before Apply returns.
	if err := s.Apply(ctx, persistence.Change{
		Put:        []messages.AuthRecord{{UID: uid, AccessToken: "access", RefreshToken: "refresh"}},
		SetCurrent: &uid,
	}); err != nil {
		fmt.Println(err)
	}
	_ = s.Close()

	s, err = persistence.OpenBadger(dir, persistence.WithGetenv(func(string) string { return "" }))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(st.Records), st.Current, string(st.Records[0].AccessToken))
	_, err = os.Stat(dir + ".key")
	fmt.Println("key file beside the store:", err == nil)
	// Output:
	// 1 alice access
	// key file beside the store: true
}
