package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const raw = "tok-9f8e7d6c5b4a"

// Row 19 (store side): a Secret, and a record holding Secrets, never print
// their value through fmt, encoding/json, slog or zap.
func TestSecret_RedactsEverywhere(t *testing.T) {
	s := Secret(raw)
	rec := AuthRecord{UID: "u1", AccessToken: s, RefreshToken: Secret("ref-" + raw)}
	var out []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		out = append(out, fmt.Sprintf(f, s), fmt.Sprintf(f, rec), fmt.Sprintf(f, &rec))
	}
	out = append(out, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(rec))
	j, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j))

	var sb bytes.Buffer
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("rec", "token", s, "rec", rec)
	slog.New(slog.NewTextHandler(&sb, nil)).Info("rec", "token", s, "rec", rec)
	var zb bytes.Buffer
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&zb), zap.DebugLevel))
	zl.Info("rec", zap.Any("token", s), zap.Any("rec", rec), zap.Stringer("s", s), zap.Reflect("r", rec))
	_ = zl.Sync()
	out = append(out, sb.String(), zb.String())

	for _, o := range out {
		if strings.Contains(o, raw) {
			t.Errorf("secret leaked: %s", o)
		}
	}
	if string(s) != raw {
		t.Fatal("string(s) must be the value")
	}
	if !strings.Contains(fmt.Sprintf("%v", s), "REDACTED") || Secret("").String() != "" {
		t.Fatal("redaction marker missing, or empty secret not empty")
	}
}

func TestFailure_UnwrapsSentinel(t *testing.T) {
	err := error(&Failure{Err: fmt.Errorf("wrapped: %w", ErrSessionExpired)})
	if !errors.Is(err, ErrSessionExpired) || err.Error() != "wrapped: "+ErrSessionExpired.Error() {
		t.Fatalf("Failure = %v", err)
	}
	if EndExpired.Err() != ErrSessionExpired || EndLoggedOut.Err() != ErrLoggedOut {
		t.Fatal("EndReason.Err")
	}
}
