package persistence

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/apppigeon/pigeon/messages"
)

// TestBadgerLogger_WarnAndAboveOnly: across a real store's open, write,
// close and reopen, nothing below Warn from the "badger" logger reaches a
// logger that would accept Debug (badger logs Info lines on every open).
func TestBadgerLogger_WarnAndAboveOnly(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	dir := filepath.Join(t.TempDir(), "store")
	for i := range 2 { // create, then reopen the existing directory
		s, err := OpenBadger(dir, WithEncryptionKey(testKey), WithLogger(logger))
		if err != nil {
			t.Fatalf("OpenBadger #%d: %v", i+1, err)
		}
		r := rec("alice", i)
		r.AccessToken = messages.Secret(randomToken(t))
		uid := r.UID
		if err := s.Apply(t.Context(), Change{Put: []messages.AuthRecord{r}, SetCurrent: &uid}); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	for _, e := range logs.FilterLoggerName("badger").All() {
		if e.Level < zapcore.WarnLevel {
			t.Errorf("badger entry at %v reached the logger: %q", e.Level, e.Message)
		}
	}
}

// TestBadgerLogger_Levels: the adapter maps Warningf to Warn and Errorf to
// Error under the "badger" name, newline trimmed, and drops Infof and
// Debugf.
func TestBadgerLogger_Levels(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newBadgerLogger(zap.New(core))
	l.Infof("info %d\n", 1)
	l.Debugf("debug %d\n", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d\n", 4)
	got := logs.AllUntimed()
	want := []struct {
		level zapcore.Level
		msg   string
	}{{zapcore.WarnLevel, "warn 3"}, {zapcore.ErrorLevel, "error 4"}}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if e := got[i]; e.Level != w.level || e.Message != w.msg || e.LoggerName != "badger" {
			t.Errorf("entry %d: %v %q from %q; want %v %q from badger", i, e.Level, e.Message, e.LoggerName, w.level, w.msg)
		}
	}
}
