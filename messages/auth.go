package messages

import (
	"encoding/json"
	"time"
)

// AuthRecord is one account's stored credentials. Records are values: an
// actor never shares a record it will change later. Safe for concurrent
// reads.
type AuthRecord struct {
	UID          string
	AccessToken  Secret
	RefreshToken Secret
	// ExpiresAt is when the access token expires; zero means unknown.
	ExpiresAt time.Time
	// IssuedAt is when these tokens were saved (by a login or a refresh);
	// the refresh-ahead window is bounded by half of ExpiresAt-IssuedAt.
	IssuedAt time.Time
	// Data is the application's own JSON about the account (profile, roles).
	Data json.RawMessage
}

// Clone returns a deep copy (Data is copied).
func (r AuthRecord) Clone() AuthRecord {
	if r.Data != nil {
		r.Data = append(json.RawMessage(nil), r.Data...)
	}
	return r
}
