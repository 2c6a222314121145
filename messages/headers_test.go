package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Every message holding a header map redacts the values wherever it is
// printed or logged, as a value and as the pointer actors send.
func TestUpdateHeaders_RedactsEverywhere(t *testing.T) {
	m := &UpdateHeaders{Headers: http.Header{"Authorization": {"Bearer " + raw}, "Cookie": {"sid=" + raw}, "X-Trace": {"t1"}}}
	var out []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(f, m), fmt.Sprintf(f, *m))
	}
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j), fmt.Sprint(m), m.String())
	var sb bytes.Buffer
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("dead letter", "message", m)
	slog.New(slog.NewTextHandler(&sb, nil)).Info("dead letter", "message", m)
	var zb bytes.Buffer
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&zb), zap.DebugLevel))
	zl.Info("dead letter", zap.Any("message", m), zap.Reflect("r", m), zap.Stringer("s", m))
	_ = zl.Sync()
	out = append(out, sb.String(), zb.String())
	for _, o := range out {
		if strings.Contains(o, raw) {
			t.Errorf("header value leaked: %s", o)
		}
		if !strings.Contains(o, "Authorization") {
			t.Errorf("header names should stay visible: %s", o)
		}
	}
	if m.Headers.Get("Authorization") != "Bearer "+raw {
		t.Fatal("the map itself must keep the value")
	}
}
