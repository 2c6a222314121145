package pigeon

import (
	"net/url"
	"testing"
)

// TestQuickResolve_SameURLAsResolve: wherever the shortcut answers, its
// URL is the one resolve gives, and it declines what it cannot join
// plainly.
func TestQuickResolve_SameURLAsResolve(t *testing.T) {
	bases := []string{"http://127.0.0.1:8080", "http://127.0.0.1:8080/", "https://api.example.com/v1", "https://api.example.com/v1/",
		"https://u:p@api.example.com/v1", "https://api.example.com/a%2Fb/", "https://api.example.com/x/../y", "https://api.example.com/v1?k=1"}
	paths := []string{"/", "/me", "/users/42", "/a/b/", "/~x_y-z.json", "/a:b@c;d=e,f+g$h&i", "/.well-known/x", "/a/../b",
		"/a/./b", "//evil.example/x", "/q?x=1", "/f#frag", "/sp ace", "/pct%20", "me", "", "http://other.example/abs", "/ü"}
	declines := 0
	for _, bs := range bases {
		b, err := url.Parse(bs)
		if err != nil {
			t.Fatal(err)
		}
		h := &httpCore{baseURL: b}
		for _, p := range paths {
			got, ok := h.quickResolve(p)
			if !ok {
				declines++
				continue
			}
			u, err := h.resolve(p)
			if err != nil {
				t.Fatalf("%s + %q: quickResolve %q but resolve failed: %v", bs, p, got, err)
			}
			want, _ := url.Parse(u.String())
			gu, err := url.Parse(got)
			if err != nil || gu.String() != want.String() || gu.Path != want.Path {
				t.Errorf("%s + %q: quickResolve %q, resolve %q", bs, p, got, u.String())
			}
		}
	}
	if declines == 0 || declines == len(bases)*len(paths) {
		t.Fatalf("%d of %d declined: the table does not exercise both sides", declines, len(bases)*len(paths))
	}
	if _, ok := (&httpCore{}).quickResolve("/me"); ok {
		t.Error("quickResolve answered without a base URL")
	}
}
