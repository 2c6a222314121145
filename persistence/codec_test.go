package persistence

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// TestCodec_EncodeMatchesJSON: encodeRecord writes exactly what
// json.Marshal writes for the record's storedRecord, for plain and for
// awkward strings (quotes, backslashes, HTML characters, control
// characters, non-ASCII, invalid UTF-8), times in zones and at zero, and
// with and without Data; and decodeRecord reads it back.
func TestCodec_EncodeMatchesJSON(t *testing.T) {
	zoned := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", -(3*3600+30*60)))
	cases := []messages.AuthRecord{
		rec("alice", 1),
		{UID: "bare"},
		{UID: `q"u\o<t>e&`, AccessToken: "tab\there\nnewline\x00nul\x7f", RefreshToken: "héllo \u2028 \u2029 ✓",
			ExpiresAt: zoned, IssuedAt: zoned.UTC(), Data: json.RawMessage(`{"a":"<b>"}`)},
		{UID: "bad-utf8-\xff\xfe", AccessToken: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-_=", Data: []byte{0, 1, 2, 255}},
	}
	for _, r := range cases {
		got, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("encodeRecord(%q): %v", r.UID, err)
		}
		want, err := json.Marshal(storedRecord{V: schemaVersion, UID: r.UID, AccessToken: string(r.AccessToken),
			RefreshToken: string(r.RefreshToken), ExpiresAt: r.ExpiresAt, IssuedAt: r.IssuedAt, Data: r.Data})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encodeRecord(%q):\n got %s\nwant %s", r.UID, got, want)
		}
		if !json.Valid(got) {
			t.Errorf("encodeRecord(%q) is not valid JSON", r.UID)
		}
	}
	r := rec("alice", 3)
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeRecord("rec/alice", b)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRecord(back, r); d != "" {
		t.Errorf("round trip: %s", d)
	}
	if _, err := encodeRecord(messages.AuthRecord{UID: "far", ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("a time after year 9999 encoded")
	}
}
