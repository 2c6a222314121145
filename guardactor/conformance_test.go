package guardactor_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/apppigeon/pigeon/guardactor"
)

// caseFile is the generic shape of testdata/cases.json (or any file in its schema).
type caseFile struct {
	Cases []conformanceCase `json:"cases"`
}

type conformanceCase struct {
	Name       string            `json:"name"`
	Category   string            `json:"category"`
	Routes     []json.RawMessage `json:"routes"`
	GuardOrder []string          `json:"guardOrder"`
	Guards     map[string]bool   `json:"guards"`
	Location   string            `json:"location"`
	Options    struct {
		NeglectContinue bool `json:"neglectContinue"`
	} `json:"options"`
	Expect expectation `json:"expect"`
}

type expectation struct {
	Redirect *string `json:"redirect"`
	Settled  *string `json:"settled"`
	NotFound bool    `json:"notFound"`
	Error    string  `json:"error"`
}

type jsonNode struct {
	Type                     string            `json:"type"`
	Name                     string            `json:"name"`
	Path                     string            `json:"path"`
	GuardAware               *bool             `json:"guardAware"`
	ShieldOf                 []string          `json:"shieldOf"`
	FollowUp                 []string          `json:"followUp"`
	DiscardedBy              []string          `json:"discardedBy"`
	IgnoreAsContinueLocation bool              `json:"ignoreAsContinueLocation"`
	Redirect                 string            `json:"redirect"`
	PathAliases              []string          `json:"pathAliases"`
	Children                 []json.RawMessage `json:"children"`
	Guard                    string            `json:"guard"`
	DestinationPersistence   string            `json:"destinationPersistence"`
	SavesLocation            *bool             `json:"savesLocation"`
}

// errorKinds maps the schema's error names to the package sentinels.
var errorKinds = map[string]error{
	"ShieldRouteMissing":                guardactor.ErrShieldMissing,
	"MultipleShieldRoute":               guardactor.ErrMultipleShields,
	"FollowUpRouteMissing":              guardactor.ErrFollowUpMissing,
	"MissingDiscardingRouteForFollowUp": guardactor.ErrFollowUpWithoutDiscard,
	"MultipleFollowUpRoute":             guardactor.ErrMultipleFollowUps,
	"GuardNotRegistered":                guardactor.ErrGuardNotRegistered,
	"AliasRequiresName":                 guardactor.ErrAliasRequiresName,
}

// deviation is a documented, deliberate difference from a quirk or
// version-dependent case: the test asserts pigeon's behaviour instead.
type deviation struct {
	reason   string
	redirect *string
	settled  *string
}

func strp(s string) *string { return &s }

// deviations lists every case where pigeon deliberately differs from the
// case file (see doc.go, "Deviations from guarded_go_router").
var deviations = map[string]deviation{
	"discard/followUp-ancestor-short-circuits-guards": {
		reason: "Dart stops at a discarded route whose follow-up is itself or an ancestor and never checks " +
			"the enclosing GuardShells, so a blocking guard is bypassed; pigeon still applies the blocking guard (G4)",
		redirect: strp("/shield2?continue=%2Fhome%2Fintro"),
		settled:  strp("/shield2?continue=%2Fhome%2Fintro"),
	},
}

// casesPath returns $GUARD_CASES, else testdata/cases.json (go test runs
// in the package directory, so the relative path is the package's own copy).
func casesPath() string {
	if p := os.Getenv("GUARD_CASES"); p != "" {
		return p
	}
	return filepath.Join("testdata", "cases.json")
}

func loadCases(t *testing.T) []conformanceCase {
	t.Helper()
	p := casesPath()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read guard cases (set GUARD_CASES to override): %v", err)
	}
	var f caseFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("parse %s: %v", p, err)
	}
	if len(f.Cases) == 0 {
		t.Fatalf("%s holds no cases", p)
	}
	return f.Cases
}

func buildNodes(raw []json.RawMessage) ([]guardactor.Node, error) {
	var out []guardactor.Node
	for _, r := range raw {
		var n jsonNode
		if err := json.Unmarshal(r, &n); err != nil {
			return nil, err
		}
		kids, err := buildNodes(n.Children)
		if err != nil {
			return nil, err
		}
		switch n.Type {
		case "route":
			out = append(out, &guardactor.Route{
				Path: n.Path, Name: n.Name, Plain: n.GuardAware != nil && !*n.GuardAware,
				ShieldOf: n.ShieldOf, FollowUp: n.FollowUp, DiscardedBy: n.DiscardedBy,
				IgnoreAsContinueLocation: n.IgnoreAsContinueLocation, Redirect: n.Redirect,
				PathAliases: n.PathAliases, Children: kids,
			})
		case "guardShell":
			mode := guardactor.PersistStore
			switch n.DestinationPersistence {
			case "", "store":
			case "ignore":
				mode = guardactor.PersistIgnore
			case "clear":
				mode = guardactor.PersistClear
			default:
				return nil, fmt.Errorf("unknown destinationPersistence %q", n.DestinationPersistence)
			}
			if n.SavesLocation != nil && !*n.SavesLocation && n.DestinationPersistence == "" {
				mode = guardactor.PersistIgnore
			}
			out = append(out, &guardactor.GuardShell{Guard: n.Guard, Persistence: mode, Children: kids})
		case "discardShell":
			out = append(out, &guardactor.DiscardShell{Guard: n.Guard, Children: kids})
		case "shell":
			out = append(out, &guardactor.Shell{Children: kids})
		default:
			return nil, fmt.Errorf("unknown node type %q", n.Type)
		}
	}
	return out, nil
}

// sameURL compares as the schema says: equal paths and equal decoded query
// multimaps.
func sameURL(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if ua.Path != ub.Path {
		return false
	}
	return reflect.DeepEqual(multimap(ua.RawQuery), multimap(ub.RawQuery))
}

func multimap(raw string) map[string][]string {
	q, _ := url.ParseQuery(raw)
	for _, v := range q {
		sort.Strings(v)
	}
	if len(q) == 0 {
		return nil
	}
	return q
}

func show(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func TestConformance(t *testing.T) {
	cases := loadCases(t)
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.Name] {
			t.Errorf("duplicate case name %q", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			nodes, err := buildNodes(c.Routes)
			if err != nil {
				t.Fatalf("case file: %v", err)
			}
			router, err := guardactor.New(nodes, c.GuardOrder)
			if c.Expect.Error != "" {
				want, ok := errorKinds[c.Expect.Error]
				if !ok {
					t.Fatalf("unknown expected error %q", c.Expect.Error)
				}
				if err == nil && want == guardactor.ErrGuardNotRegistered {
					// Dart raises it at navigation time; so does pigeon.
					_, err = router.Evaluate(c.Location, guardactor.Snapshot(c.Guards))
				}
				if !errors.Is(err, want) {
					t.Fatalf("error = %v, want %s (%v)", err, c.Expect.Error, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			wantRedirect, wantSettled := c.Expect.Redirect, c.Expect.Settled
			if d, ok := deviations[c.Name]; ok {
				if c.Category == "core" || c.Category == "security" || c.Category == "readme-conflict" || c.Category == "optional-feature" {
					t.Fatalf("deviation listed for a %s case", c.Category)
				}
				t.Logf("documented deviation: %s", d.reason)
				wantRedirect, wantSettled = d.redirect, d.settled
			}
			var opts []guardactor.EvalOption
			if c.Options.NeglectContinue {
				opts = append(opts, guardactor.NeglectContinue(true))
			}
			snap := guardactor.Snapshot(c.Guards)
			res, err := router.Evaluate(c.Location, snap, opts...)
			if err != nil {
				t.Fatalf("Evaluate(%q): %v", c.Location, err)
			}
			if res.NotFound != c.Expect.NotFound {
				t.Fatalf("NotFound = %v, want %v", res.NotFound, c.Expect.NotFound)
			}
			got := res.Redirect
			if wantRedirect == nil || *wantRedirect == "" || sameURL(*wantRedirect, c.Location) {
				if got != "" {
					t.Errorf("redirect = %q (rule %v, guard %q), want none", got, res.Rule, res.Guard)
				}
			} else if !sameURL(got, *wantRedirect) {
				t.Errorf("redirect = %q (rule %v, guard %q), want %q", got, res.Rule, res.Guard, *wantRedirect)
			}
			if wantSettled != nil {
				s, err := router.Settle(c.Location, snap, opts...)
				if err != nil {
					t.Fatalf("Settle: %v", err)
				}
				if !sameURL(s.Location, *wantSettled) {
					t.Errorf("settled = %q, want %q (hops %+v)", s.Location, show(wantSettled), s.Hops)
				}
			}
		})
	}
	for name := range deviations {
		if !seen[name] {
			t.Logf("deviation %q names no case in this file", name)
		}
	}
	if strings.TrimSpace(os.Getenv("GUARD_CASES")) == "" && len(cases) < 1 {
		t.Fatal("no cases")
	}
}
