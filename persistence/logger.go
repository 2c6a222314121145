package persistence

import (
	"strings"

	"go.uber.org/zap"
)

// badgerLogger adapts a zap logger to badger.Logger. Only badger's
// warnings and errors reach the user's logger (at Warn and Error); its
// Infof and Debugf lines (compaction, replay, value-log chatter on every
// open and close) are dropped.
type badgerLogger struct{ s *zap.SugaredLogger }

func newBadgerLogger(l *zap.Logger) badgerLogger {
	if l == nil {
		l = zap.NewNop()
	}
	return badgerLogger{s: l.Named("badger").WithOptions(zap.AddCallerSkip(2)).Sugar()}
}

func trimNL(f string) string { return strings.TrimRight(f, "\n") }

func (b badgerLogger) Errorf(f string, v ...any)   { b.s.Errorf(trimNL(f), v...) }
func (b badgerLogger) Warningf(f string, v ...any) { b.s.Warnf(trimNL(f), v...) }
func (badgerLogger) Infof(string, ...any)          {}
func (badgerLogger) Debugf(string, ...any)         {}
