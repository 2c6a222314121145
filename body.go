package pigeon

import (
	"errors"
	"fmt"
	"io"
)

// bodyTooLargeError is the error of a response over WithMaxResponseBytes.
type bodyTooLargeError struct{ max int64 }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("pigeon: response body exceeds %d bytes (WithMaxResponseBytes)", e.max)
}

func errBodyTooLarge(max int64) error { return &bodyTooLargeError{max} }

// bodyChunk is the first read size of a body of unknown length; later
// chunks double up to maxBodyChunk.
const (
	bodyChunk    = 16 << 10
	maxBodyChunk = 4 << 20
)

// readBody reads a whole response body of at most max bytes. It never
// costs more than the limit: a body announced longer than max is refused
// before any read; one of known length is read into one buffer of exactly
// that size; one of unknown length is read in chunks that are joined only
// once the end is reached within the limit, so a body over the limit costs
// at most max bytes before it is refused (io.ReadAll's regrowth would cost
// several times the limit).
func readBody(r io.Reader, contentLength, max int64) ([]byte, error) {
	if contentLength > max {
		return nil, errBodyTooLarge(max)
	}
	if contentLength >= 0 {
		buf := make([]byte, contentLength)
		n, err := io.ReadFull(r, buf)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("body ended after %d of %d announced bytes: %w", n, contentLength, err)
			}
			return nil, err
		}
		return buf, nil
	}
	var (
		chunks [][]byte
		total  int64
		size   int64 = bodyChunk
	)
	for {
		c := make([]byte, min(size, max+1-total))
		n, err := io.ReadFull(r, c)
		total += int64(n)
		if total > max {
			return nil, errBodyTooLarge(max)
		}
		chunks = append(chunks, c[:n])
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		size = min(size*2, maxBodyChunk)
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}
