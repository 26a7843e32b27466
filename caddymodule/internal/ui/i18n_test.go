package ui

import (
	"go/ast"
	"go/parser"
	"go/token"
	"html/template"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template/parse"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/templates"
)

func embeddedCatalogues(t *testing.T) *catalogues {
	t.Helper()
	cats, err := loadCatalogues(templates.FS, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return cats
}

// TestCataloguesAreComplete checks that every embedded catalogue has
// exactly the English keys, with the same placeholders, and every plural
// form its language needs.
func TestCataloguesAreComplete(t *testing.T) {
	cats := embeddedCatalogues(t)
	if got := cats.tags(); !slices.Equal(got, []string{"en", "ru"}) {
		t.Errorf("got languages %v, want [en ru]", got)
	}
	en := cats.byTag["en"]
	for tag, l := range cats.byTag {
		for key := range en.messages {
			if _, ok := l.messages[key]; !ok {
				t.Errorf("%s.json lacks %q", tag, key)
			}
		}
		for key, m := range l.messages {
			em, ok := en.messages[key]
			if !ok {
				t.Errorf("%s.json has %q, which en.json lacks", tag, key)
				continue
			}
			if (m.forms == nil) != (em.forms == nil) {
				t.Errorf("%s.json: %q is plural in one catalogue and not in the other", tag, key)
			}
			want := placeholders(strings.Join(em.texts(), " "))
			if got := placeholders(strings.Join(m.texts(), " ")); !slices.Equal(got, want) {
				t.Errorf("%s.json: %q has placeholders %v, want %v", tag, key, got, want)
			}
			for _, text := range m.texts() {
				if strings.TrimSpace(text) == "" {
					t.Errorf("%s.json: %q is empty", tag, key)
				}
			}
			if m.forms != nil {
				for n := range 1000 {
					if f := pluralForm(l.tag, n); m.forms[f] == "" {
						t.Errorf("%s.json: %q lacks the plural form %v, needed for %d", tag, key, f, n)
						break
					}
				}
			}
		}
	}
}

// TestEveryKeyIsUsedAndEveryUsedKeyExists reads the embedded templates and
// the package's Go source: each key a template names must be in the
// catalogues, and each catalogue key must be used somewhere.
func TestEveryKeyIsUsedAndEveryUsedKeyExists(t *testing.T) {
	cats := embeddedCatalogues(t)
	en := cats.byTag["en"]
	used := map[string]bool{"language.name": true, "language.direction": true}
	names := append(slices.Clone(pageNames), "layout")
	for _, parts := range partials {
		names = append(names, parts...)
	}
	for _, name := range names {
		src, err := fs.ReadFile(templates.FS, name+".html")
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := template.New(name).Funcs(template.FuncMap{"t": en.T}).Parse(string(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tmpl.Templates() {
			keys, err := templateKeys([]*parse.Tree{tt.Tree})
			if err != nil {
				t.Errorf("%s.html: %v", name, err)
			}
			for _, k := range keys {
				used[k] = true
				if _, ok := en.messages[k]; !ok {
					t.Errorf("%s.html uses %q, which en.json lacks", name, k)
				}
			}
		}
	}
	goFiles := flowSources(t)
	var source strings.Builder
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		source.Write(b)
	}
	for key := range en.messages {
		if !used[key] && !strings.Contains(source.String(), strconv.Quote(key)) {
			t.Errorf("en.json has %q, which no template and no Go file uses", key)
		}
	}
}

func TestMessages(t *testing.T) {
	cats := embeddedCatalogues(t)
	en, ru := cats.byTag["en"], cats.byTag["ru"]
	for _, tc := range []struct {
		loc  *Locale
		key  string
		args []any
		want string
	}{
		{en, "duration.minutes", []any{"count", 1}, "1 minute"},
		{en, "duration.minutes", []any{"count", 2}, "2 minutes"},
		{ru, "duration.minutes", []any{"count", 1}, "1 минуту"},
		{ru, "duration.minutes", []any{"count", 3}, "3 минуты"},
		{ru, "duration.minutes", []any{"count", 5}, "5 минут"},
		{ru, "duration.minutes", []any{"count", 11}, "11 минут"},
		{ru, "duration.minutes", []any{"count", 21}, "21 минуту"},
		{ru, "duration.hours", []any{"count", 24}, "24 часа"},
		{ru, "duration.seconds", []any{"count", 45}, "45 секунд"},
		{en, "enable.qr_alt", []any{"account", "alice"}, "QR code for alice"},
		{en, "enable.qr_alt", nil, "QR code for {account}"},
		{en, "codes_file.heading", []any{"product", "P", "user", "u"}, "Backup codes for u at P"},
		{ru, "security.enable_link", nil, "Включить защиту"},
		{ru, "security.disable_link", nil, "Отключить защиту"},
		{ru, "field.app_code", nil, "Код из приложения"},
		{ru, "field.account_password", nil, "Пароль от аккаунта"},
		{ru, "enable.submit", nil, "Включить"},
		{ru, "disable.submit", nil, "Выключить"},
	} {
		if got := tc.loc.T(tc.key, tc.args...); got != tc.want {
			t.Errorf("%s T(%q, %v): got %q, want %q", tc.loc.tag, tc.key, tc.args, got, tc.want)
		}
	}
	if got := HumanWait(ru, 90*time.Second); got != "2 минуты" {
		t.Errorf("HumanWait(ru, 90s): got %q, want 2 минуты", got)
	}
	if got := HumanWait(en, 300*time.Millisecond); got != "1 second" {
		t.Errorf("HumanWait(en, 300ms): got %q, want 1 second", got)
	}
	var reported []string
	l := &Locale{tag: ru.tag, messages: ru.messages, fallback: en, missing: func(lang, key string) { reported = append(reported, lang+" "+key) }}
	if got := l.T("no.such.key"); got != "no.such.key" || !slices.Equal(reported, []string{"ru no.such.key"}) {
		t.Errorf("missing key: got %q, reported %v; want the key back and one report", got, reported)
	}
}

func TestLanguagePicker(t *testing.T) {
	cats := embeddedCatalogues(t)
	en, ru := cats.byTag["en"], cats.byTag["ru"]
	both := newLanguagePicker([]*Locale{en, ru})
	ruFirst := newLanguagePicker([]*Locale{ru, en})
	onlyRu := newLanguagePicker([]*Locale{ru})
	for _, tc := range []struct {
		name           string
		p              *languagePicker
		cookie, accept string
		want           *Locale
	}{
		{"nothing: the first offered", both, "", "", en},
		{"nothing, Russian first", ruFirst, "", "", ru},
		{"Accept-Language ru", both, "", "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", ru},
		{"Accept-Language en first", both, "", "en-GB,ru;q=0.5", en},
		{"Accept-Language of another language", both, "", "de-DE,de;q=0.9", en},
		{"Accept-Language of another language, Russian first", ruFirst, "", "fr", ru},
		{"Accept-Language weights", both, "", "en;q=0.2, ru;q=0.9", ru},
		{"the user's choice beats Accept-Language", both, "en", "ru", en},
		{"the user's choice of Russian", both, "ru", "en", ru},
		{"a choice not offered is ignored", both, "de", "ru", ru},
		{"a forged choice is ignored", both, "ru\r\nX: y", "", en},
		{"garbage Accept-Language", both, "", ";;;q=x,,==", en},
		{"a bad entry does not spoil the rest", both, "", "ru-RU,ru;q=0.9;q=0.9,en;q=0.1", ru},
		{"q=0 means not wanted", both, "", "ru;q=0, en;q=0.1", en},
		{"the wildcard", ruFirst, "", "*", ru},
		{"an overlong Accept-Language is ignored", both, "", "ru," + strings.Repeat("x-", 600), en},
		{"one language offered: forced", onlyRu, "en", "en", ru},
	} {
		if got := tc.p.pick(tc.cookie, tc.accept); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got.tag, tc.want.tag)
		}
	}
}

// TestOperatorCatalogues loads catalogues from a templates_dir: changed
// English words, an added language, and the mistakes refused.
func TestOperatorCatalogues(t *testing.T) {
	write := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "locales"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, "locales", name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	dir := write(t, map[string]string{
		"en.json": `{"login.title": "Sign in"}`,
		"de.json": `{"language.name": "Deutsch", "login.title": "Anmelden", "duration.minutes": {"one": "{count} Minute", "other": "{count} Minuten"}}`,
	})
	cats, err := loadCatalogues(templates.FS, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cats.tags(); !slices.Equal(got, []string{"en", "de", "ru"}) {
		t.Errorf("got languages %v, want [en de ru]", got)
	}
	en, de := cats.byTag["en"], cats.byTag["de"]
	for _, tc := range []struct{ got, want string }{
		{en.T("login.title"), "Sign in"},
		{en.T("login.submit"), "Continue"}, // not overridden: stays
		{de.T("login.title"), "Anmelden"},
		{de.T("login.submit"), "Continue"}, // missing: English
		{de.T("duration.minutes", "count", 3), "3 Minuten"},
		{de.Name(), "Deutsch"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown key", map[string]string{"ru.json": `{"login.titel": "x"}`}, `unknown key "login.titel"`},
		{"extra placeholder", map[string]string{"en.json": `{"login.title": "Hi {user}"}`}, "placeholders"},
		{"not JSON", map[string]string{"ru.json": `{"login.title": }`}, "ru.json"},
		{"not a language", map[string]string{"klingon!.json": `{}`}, "not a language tag"},
		{"plural without other", map[string]string{"ru.json": `{"duration.hours": {"one": "час"}}`}, `lack "other"`},
		{"unknown plural form", map[string]string{"ru.json": `{"duration.hours": {"other": "x", "several": "y"}}`}, "unknown plural form"},
		{"number as message", map[string]string{"ru.json": `{"login.title": 5}`}, "want a string"},
	} {
		_, err := loadCatalogues(templates.FS, write(t, tc.files), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestTemplateKeysNeedQuotedKeys(t *testing.T) {
	tmpl := template.Must(template.New("x.html").Funcs(template.FuncMap{"t": func(string, ...any) string { return "" }}).
		Parse("{{define \"content\"}}\n{{t .Title}}{{end}}"))
	var trees []*parse.Tree
	for _, tt := range tmpl.Templates() {
		trees = append(trees, tt.Tree)
	}
	if _, err := templateKeys(trees); err == nil || !strings.Contains(err.Error(), "x.html:2") {
		t.Errorf("got %v, want an error naming x.html:2", err)
	}
}

// messageFields are the page fields that hold message keys.
var messageFields = map[string]bool{"Title": true, "Error": true, "Notice": true, "Message": true, "BackText": true}

// TestGoCodeUsesOnlyKnownKeys reads the package's Go source for the
// message keys it hands to pages (page fields that hold keys, errorPage,
// showCodes, T) and checks each is in the catalogue, so that a page whose
// text is not translated is caught even if no test renders it.
func TestGoCodeUsesOnlyKnownKeys(t *testing.T) {
	en := embeddedCatalogues(t).byTag["en"]
	fset := token.NewFileSet()
	files := flowSources(t)
	consts := map[string]string{}
	var parsed []*ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, af)
		for _, d := range af.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				for _, s := range gd.Specs {
					vs := s.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if bl, ok := vs.Values[i].(*ast.BasicLit); ok && bl.Kind == token.STRING {
								consts[n.Name], _ = strconv.Unquote(bl.Value)
							}
						}
					}
				}
			}
		}
	}
	found := 0
	check := func(e ast.Expr) {
		var key string
		switch v := e.(type) {
		case *ast.BasicLit:
			if v.Kind != token.STRING {
				return
			}
			key, _ = strconv.Unquote(v.Value)
		case *ast.Ident:
			var ok bool
			if key, ok = consts[v.Name]; !ok {
				return
			}
		default:
			return
		}
		found++
		if _, ok := en.messages[key]; !ok {
			t.Errorf("%s: %q is not a key of en.json: put the words in the catalogues", fset.Position(e.Pos()), key)
		}
	}
	for _, af := range parsed {
		ast.Inspect(af, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "page" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && messageFields[kv.Key.(*ast.Ident).Name] {
							check(kv.Value)
						}
					}
				}
			case *ast.AssignStmt:
				for i, lhs := range n.Lhs {
					if sel, ok := lhs.(*ast.SelectorExpr); ok && messageFields[sel.Sel.Name] && i < len(n.Rhs) {
						check(n.Rhs[i])
					}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					switch {
					case sel.Sel.Name == "errorPage" && len(n.Args) == 4:
						check(n.Args[2])
						check(n.Args[3])
					case sel.Sel.Name == "showCodes" && len(n.Args) == 4:
						check(n.Args[3])
					case sel.Sel.Name == "T" && len(n.Args) >= 1:
						check(n.Args[0])
					}
				}
			}
			return true
		})
	}
	if found < 20 {
		t.Errorf("found only %d message keys in the Go code; the test no longer sees them", found)
	}
}

// flowSources are the Go files, tests aside, of the packages that hand
// message keys to pages: the adapter and every internal package.
func flowSources(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"../../*.go", "../*/*.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				out = append(out, f)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Go files to read", len(out))
	}
	return out
}
