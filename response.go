package pigeon

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Response is a fully read HTTP response. It is a value the caller owns.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Decode unmarshals the JSON body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("pigeon: decoding %d response: %w", r.StatusCode, err)
	}
	return nil
}
