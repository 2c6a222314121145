package persistence

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/apppigeon/pigeon/messages"
)

// Stored layout (one badger key per item):
//
//	rec/<uid>     a record:            {"v":1,"uid":...,"access":...,"refresh":...,"expiresAt":...,"issuedAt":...,"data":<base64>}
//	meta/current  the current account: {"v":1,"uid":...}; absent = none
//
// "v" is the schema version of the value; a reader refuses versions it does
// not know instead of guessing.
const (
	schemaVersion = 1
	recPrefix     = "rec/"
	currentKey    = "meta/current"
)

func recKey(uid string) []byte { return []byte(recPrefix + uid) }

// storedRecord is the serialised form of messages.AuthRecord. It has plain
// string fields on purpose: messages.Secret redacts itself in MarshalText,
// so an AuthRecord must never be marshalled directly.
type storedRecord struct {
	V            int       `json:"v"`
	UID          string    `json:"uid"`
	AccessToken  string    `json:"access"`
	RefreshToken string    `json:"refresh"`
	ExpiresAt    time.Time `json:"expiresAt"`
	IssuedAt     time.Time `json:"issuedAt"`
	Data         []byte    `json:"data,omitempty"` // exact bytes, base64 in JSON
}

type storedCurrent struct {
	V   int    `json:"v"`
	UID string `json:"uid"`
}

func encodeRecord(r messages.AuthRecord) ([]byte, error) {
	b, err := json.Marshal(storedRecord{
		V:            schemaVersion,
		UID:          r.UID,
		AccessToken:  string(r.AccessToken),
		RefreshToken: string(r.RefreshToken),
		ExpiresAt:    r.ExpiresAt,
		IssuedAt:     r.IssuedAt,
		Data:         r.Data,
	})
	if err != nil {
		// Only a time outside years 0-9999 gets here; the error names no secret.
		return nil, fmt.Errorf("pigeon/persistence: cannot encode record %q: %w", r.UID, err)
	}
	return b, nil
}

func decodeRecord(key string, b []byte) (messages.AuthRecord, error) {
	var s storedRecord
	if err := json.Unmarshal(b, &s); err != nil {
		return messages.AuthRecord{}, &DecodeError{Key: key, Err: err}
	}
	if s.V != schemaVersion {
		return messages.AuthRecord{}, &DecodeError{Key: key, Err: fmt.Errorf("unsupported schema version %d (this pigeon reads %d)", s.V, schemaVersion)}
	}
	if want := strings.TrimPrefix(key, recPrefix); s.UID != want {
		return messages.AuthRecord{}, &DecodeError{Key: key, Err: fmt.Errorf("record holds UID %q", s.UID)}
	}
	r := messages.AuthRecord{
		UID:          s.UID,
		AccessToken:  messages.Secret(s.AccessToken),
		RefreshToken: messages.Secret(s.RefreshToken),
		ExpiresAt:    s.ExpiresAt,
		IssuedAt:     s.IssuedAt,
	}
	if len(s.Data) > 0 {
		r.Data = json.RawMessage(s.Data)
	}
	return r, nil
}

func encodeCurrent(uid string) []byte {
	b, _ := json.Marshal(storedCurrent{V: schemaVersion, UID: uid}) // cannot fail
	return b
}

func decodeCurrent(b []byte) (string, error) {
	var s storedCurrent
	if err := json.Unmarshal(b, &s); err != nil {
		return "", &DecodeError{Key: currentKey, Err: err}
	}
	if s.V != schemaVersion {
		return "", &DecodeError{Key: currentKey, Err: fmt.Errorf("unsupported schema version %d (this pigeon reads %d)", s.V, schemaVersion)}
	}
	return s.UID, nil
}
