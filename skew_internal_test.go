package pigeon

import (
	"net/http"
	"testing"
	"time"
)

// The skew correction is bounded: offsets under 2 s count as none (a
// Date header's resolution), larger ones are taken as they are up to 1 h
// either way; a Date further off, or none, or a malformed one, leaves the
// estimate as it was.
func TestServerClock_Bounds(t *testing.T) {
	local := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sc := &serverClock{now: func() time.Time { return local }}
	exp := local.Add(time.Hour)
	for _, tc := range []struct {
		date string
		want time.Time // exp on the local clock after the answer
	}{
		{local.Add(time.Second).Format(http.TimeFormat), exp},
		{local.Add(-time.Second).Format(http.TimeFormat), exp},
		{local.Add(5 * time.Minute).Format(http.TimeFormat), exp.Add(-5 * time.Minute)},
		{"", exp.Add(-5 * time.Minute)},
		{"not a date", exp.Add(-5 * time.Minute)},
		{local.Add(-5 * time.Minute).Format(http.TimeFormat), exp.Add(5 * time.Minute)},
		{local.Add(time.Hour).Format(http.TimeFormat), exp.Add(-time.Hour)},
		{local.Add(3 * time.Hour).Format(http.TimeFormat), exp.Add(-time.Hour)},
		{local.Add(-time.Hour).Format(http.TimeFormat), exp.Add(time.Hour)},
		{local.Add(-3 * time.Hour).Format(http.TimeFormat), exp.Add(time.Hour)},
	} {
		sc.observe(&http.Response{Header: http.Header{"Date": {tc.date}}})
		if got := sc.local(exp); !got.Equal(tc.want) {
			t.Errorf("after Date %q: %v, want %v", tc.date, got, tc.want)
		}
	}
	if !sc.local(time.Time{}).IsZero() {
		t.Error("a zero time moved")
	}
}
