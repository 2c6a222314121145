package persistence

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
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

// encodeRecord returns r's stored value: exactly the bytes json.Marshal
// gives for its storedRecord (TestCodec_EncodeMatchesJSON), written
// directly because a synced write of many accounts encodes every record
// and reflection was most of the cost.
func encodeRecord(r messages.AuthRecord) ([]byte, error) {
	expires, err := r.ExpiresAt.MarshalJSON()
	if err != nil {
		// Only a time outside years 0-9999 gets here; the error names no secret.
		return nil, fmt.Errorf("pigeon/persistence: cannot encode record %q: %w", r.UID, err)
	}
	issued, err := r.IssuedAt.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("pigeon/persistence: cannot encode record %q: %w", r.UID, err)
	}
	b := make([]byte, 0, 80+len(r.UID)+len(r.AccessToken)+len(r.RefreshToken)+len(expires)+len(issued)+
		base64.StdEncoding.EncodedLen(len(r.Data)))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, schemaVersion, 10)
	b = append(b, `,"uid":`...)
	b = appendJSONString(b, r.UID)
	b = append(b, `,"access":`...)
	b = appendJSONString(b, string(r.AccessToken))
	b = append(b, `,"refresh":`...)
	b = appendJSONString(b, string(r.RefreshToken))
	b = append(b, `,"expiresAt":`...)
	b = append(b, expires...)
	b = append(b, `,"issuedAt":`...)
	b = append(b, issued...)
	if len(r.Data) > 0 {
		b = append(b, `,"data":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Data)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes it: printable ASCII
// other than '"', '\\' and the HTML characters '<', '>', '&' as is; any
// other string through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string cannot fail
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
