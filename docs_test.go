package pigeon_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The behaviour tables in docs/ promise that each row is a test. These tests
// keep that promise checkable: every test a page names must exist, every
// table row must name one, and every area of the guard cases must be listed.
// go test runs in the package directory, which here is the module root.

// docPages are the behaviour tables, each linked from the README.
var docPages = []string{"docs/refresh.md", "docs/socket.md", "docs/guards.md", "docs/oauth2.md"}

// testName matches a backticked test, fuzz, example or benchmark name,
// optionally with a subtest path (`TestConformance/alias`).
var testName = regexp.MustCompile("`((?:Test|Fuzz|Example|Benchmark)[A-Za-z0-9_]*)(/[^`]*)?`")

// testFuncs returns the name of every top-level function declared in the
// module's _test.go files, with the file that declares it.
func testFuncs(t *testing.T) map[string]string {
	t.Helper()
	funcs := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
				funcs[fn.Name.Name] = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return funcs
}

// tableRows returns the body rows of every Markdown table in text (the
// header row and the |---| line left out), with their line numbers.
func tableRows(text string) map[int]string {
	rows := map[int]string{}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") {
			continue
		}
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "|---") {
			continue // header
		}
		rows[i+1] = l
	}
	return rows
}

func TestDocs_EveryNamedTestExists(t *testing.T) {
	funcs := testFuncs(t)
	for _, page := range docPages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		named := testName.FindAllStringSubmatch(text, -1)
		if len(named) == 0 {
			t.Errorf("%s names no test", page)
		}
		for _, m := range named {
			if _, ok := funcs[m[1]]; !ok {
				t.Errorf("%s names %s, which no _test.go file declares", page, m[1])
			}
		}
		for line, row := range tableRows(text) {
			if !testName.MatchString(row) {
				t.Errorf("%s:%d: table row names no test: %s", page, line, row)
			}
		}
	}
}

// TestDocs_GuardAreasListed: every area of the guard cases (the part of a
// case name before "/") has its row in docs/guards.md, and every area the
// page names has cases.
func TestDocs_GuardAreasListed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("guardactor", "testdata", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			Name string `json:"name"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	areas := map[string]bool{}
	for _, c := range f.Cases {
		area, _, _ := strings.Cut(c.Name, "/")
		areas[area] = true
	}
	page, err := os.ReadFile("docs/guards.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range testName.FindAllStringSubmatch(string(page), -1) {
		if m[1] == "TestConformance" && m[2] != "" {
			listed[strings.TrimPrefix(m[2], "/")] = true
		}
	}
	for a := range areas {
		if !listed[a] {
			t.Errorf("docs/guards.md has no row for the guard case area %q (`TestConformance/%s`)", a, a)
		}
	}
	for a := range listed {
		if !areas[a] {
			t.Errorf("docs/guards.md lists `TestConformance/%s`, but no case has that area", a)
		}
	}
}

func TestDocs_LinkedFromREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range docPages {
		if !strings.Contains(string(readme), "("+page+")") {
			t.Errorf("README.md does not link %s", page)
		}
	}
}

// TestREADME_GoBlocksAreCompiled: every ```go block of README.md is a
// verbatim copy of declarations in example_readme_test.go, whose Example
// functions run them; so each snippet builds, and runs as shown.
func TestREADME_GoBlocksAreCompiled(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no go block")
	}
	for _, b := range blocks {
		if !strings.Contains(string(src), b[1]) {
			first, _, _ := strings.Cut(b[1], "\n")
			t.Errorf("README.md go block starting %q is not in example_readme_test.go", first)
		}
	}
}
