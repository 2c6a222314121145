package persistence

import (
	"fmt"

	"go.uber.org/zap"
)

// Option configures OpenBadger. Options are applied in order; a later
// option overrides an earlier one of the same kind. An Option is an
// immutable value, safe for concurrent use and reuse.
type Option interface {
	apply(*config)
}

// config is OpenBadger's configuration after options.
type config struct {
	// key is the explicit encryption key (WithEncryptionKey); nil = none given.
	key []byte
	// keySet records that WithEncryptionKey was used (even with a bad key).
	keySet bool
	// noEncryption disables encryption at rest (WithoutEncryption).
	noEncryption bool
	// getenv looks up PIGEON_STORE_KEY. Zero value: os.Getenv.
	getenv func(string) string
	// keyFile is the generated key's path. Zero value: <dir>.key.
	keyFile string
	// logger receives badger's log. Zero value: zap.NewNop().
	logger *zap.Logger
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// EnvKey is the environment variable that holds the store's encryption key,
// base64 (standard alphabet, padded or not) of 16, 24 or 32 bytes.
const EnvKey = "PIGEON_STORE_KEY"

// WithEncryptionKey sets the AES key the store is encrypted with: 16, 24 or
// 32 bytes (AES-128/192/256); any other length makes OpenBadger fail with
// ErrInvalidKey. The key is copied. It takes precedence over PIGEON_STORE_KEY
// and the key file. Default: no explicit key (see OpenBadger).
func WithEncryptionKey(key []byte) Option {
	k := append([]byte(nil), key...)
	return optionFunc(func(c *config) { c.key, c.keySet = k, true })
}

// WithoutEncryption stores the data unencrypted. Not recommended: tokens
// are then readable by anyone who can read the directory. A directory
// created encrypted cannot be opened with this option (ErrWrongKey), and
// the reverse. Combining it with WithEncryptionKey is an error. Default:
// encrypted.
func WithoutEncryption() Option {
	return optionFunc(func(c *config) { c.noEncryption = true })
}

// WithGetenv sets how PIGEON_STORE_KEY is looked up (for tests, or to read
// the key from somewhere else). A nil function means os.Getenv, the default.
// An empty value means the variable is unset.
func WithGetenv(getenv func(string) string) Option {
	return optionFunc(func(c *config) { c.getenv = getenv })
}

// WithKeyFile sets where the generated key is kept when neither
// WithEncryptionKey nor PIGEON_STORE_KEY gives one. The path must be
// outside the data directory. Empty means the default, "<dir>.key" beside
// the data directory.
func WithKeyFile(path string) Option {
	return optionFunc(func(c *config) { c.keyFile = path })
}

// WithLogger routes badger's own warnings and errors into logger under the
// name "badger" (at Warn and Error); badger's Infof/Debugf lines are
// dropped. A nil logger means silent, the default. pigeon never logs a key
// or a token.
func WithLogger(logger *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = logger })
}

func (c *config) validate() error {
	if c.keySet && c.noEncryption {
		return fmt.Errorf("pigeon/persistence: WithEncryptionKey and WithoutEncryption are mutually exclusive")
	}
	return nil
}
