package persistence

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDir returns the default data directory of the store called name:
// os.UserConfigDir()/pigeon/<name>. An empty name means "default". A name
// must be a single path element (no separators, not "." or "..").
// DefaultDir does not create the directory. Safe for concurrent use.
func DefaultDir(name string) (string, error) {
	if name == "" {
		name = "default"
	}
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("pigeon/persistence: invalid store name %q: want a single path element", name)
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("pigeon/persistence: no default store directory: %w", err)
	}
	return filepath.Join(base, "pigeon", name), nil
}
