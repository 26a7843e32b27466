package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template/parse"
	"unicode/utf8"

	"golang.org/x/text/feature/plural"
	"golang.org/x/text/language"

	"github.com/caddy-two-factor/caddy-two-factor/templates"
)

// The pages' words live in message catalogues, one JSON file per language
// (templates/locales/<tag>.json, tag in BCP 47), embedded in the binary. A
// catalogue maps a key to a message, or to an object of CLDR plural forms
// ("zero", "one", "two", "few", "many", "other") for a message that counts
// something. A message may hold placeholders such as {count} or {user},
// filled in by the caller. Messages are plain text: the templates escape
// them like any other value, so no catalogue can put markup on a page.

// baseLanguage is the language every other catalogue is checked against and
// falls back to for a key it lacks.
const baseLanguage = "en"

// localesDir is the folder of the catalogues, in the embedded templates and
// in templates_dir.
const localesDir = "locales"

// message is one catalogue entry: a plain text, or plural forms.
type message struct {
	text  string
	forms map[plural.Form]string // nil for a plain message; else has Other
}

// pluralForms names the CLDR plural categories as catalogues write them.
var pluralForms = map[string]plural.Form{
	"zero": plural.Zero, "one": plural.One, "two": plural.Two,
	"few": plural.Few, "many": plural.Many, "other": plural.Other,
}

// UnmarshalJSON reads a message: a string, or an object of plural forms.
func (m *message) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &m.text); err == nil {
		return nil
	}
	var forms map[string]string
	if err := json.Unmarshal(b, &forms); err != nil {
		return errors.New("want a string, or an object of plural forms")
	}
	m.forms = make(map[plural.Form]string, len(forms))
	for name, text := range forms {
		f, ok := pluralForms[name]
		if !ok {
			return fmt.Errorf("unknown plural form %q (want zero, one, two, few, many, other)", name)
		}
		m.forms[f] = text
	}
	if _, ok := m.forms[plural.Other]; !ok {
		return errors.New(`plural forms lack "other"`)
	}
	return nil
}

// texts returns every text of the message.
func (m message) texts() []string {
	if m.forms == nil {
		return []string{m.text}
	}
	return slices.Collect(maps.Values(m.forms))
}

// Locale is one language's catalogue.
type Locale struct {
	tag      language.Tag
	messages map[string]message
	fallback *Locale // the base language, for keys this catalogue lacks
	// missing is told of a key that no catalogue has.
	missing func(lang, key string)
}

// Name is the language's name in itself, for the language switch.
func (l *Locale) Name() string { return l.T("language.name") }

// Dir is the writing direction, ltr or rtl.
func (l *Locale) Dir() string {
	if l.T("language.direction") == "rtl" {
		return "rtl"
	}
	return "ltr"
}

// T returns the message for key, its placeholders filled from args, which
// are pairs of a name and a value: T("error.retry", "wait", "5 minutes").
// An integer argument named count picks the plural form. A key no
// catalogue has comes back as it is (and is reported), so that a missing
// translation shows as text rather than breaking the page.
func (l *Locale) T(key string, args ...any) string {
	m, ok := l.messages[key]
	if !ok && l.fallback != nil {
		m, ok = l.fallback.messages[key]
	}
	if !ok {
		if l.missing != nil {
			l.missing(l.tag.String(), key)
		}
		return key
	}
	text := m.text
	if m.forms != nil {
		text = m.forms[plural.Other]
		for i := 0; i+1 < len(args); i += 2 {
			if args[i] == "count" {
				if n, ok := args[i+1].(int); ok {
					if s, ok := m.forms[pluralForm(l.tag, n)]; ok {
						text = s
					}
				}
			}
		}
	}
	if len(args) == 0 || !strings.Contains(text, "{") {
		return text
	}
	return fillPlaceholders(text, args)
}

// pluralForm is the CLDR plural category of the whole number n in lang.
func pluralForm(lang language.Tag, n int) plural.Form {
	if n < 0 {
		n = -n
	}
	return plural.Cardinal.MatchPlural(lang, n, 0, 0, 0, 0)
}

// fillPlaceholders replaces each {name} in text with its value in args;
// a placeholder without a value stays as it is.
func fillPlaceholders(text string, args []any) string {
	var b strings.Builder
	rest := scanPlaceholders(text, func(before, name, whole string) {
		b.WriteString(before)
		if v, ok := argValue(args, name); ok {
			b.WriteString(v)
		} else {
			b.WriteString(whole)
		}
	})
	b.WriteString(rest)
	return b.String()
}

// scanPlaceholders calls fn for each {name} in text, in order, with the
// text before it (since the previous one), the name, and the whole
// "{name}"; it returns the text after the last one.
func scanPlaceholders(text string, fn func(before, name, whole string)) string {
	for {
		open := strings.IndexByte(text, '{')
		if open < 0 {
			return text
		}
		end := strings.IndexByte(text[open:], '}')
		if end < 0 {
			return text
		}
		fn(text[:open], text[open+1:open+end], text[open:open+end+1])
		text = text[open+end+1:]
	}
}

func argValue(args []any, name string) (string, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == name {
			switch v := args[i+1].(type) {
			case string:
				return v, true
			case int:
				return strconv.Itoa(v), true
			default:
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

// placeholders lists the {names} in a text, sorted, each once.
func placeholders(text string) []string {
	var names []string
	scanPlaceholders(text, func(_, name, _ string) { names = append(names, name) })
	slices.Sort(names)
	return slices.Compact(names)
}

// catalogues are the languages a handler can speak.
type catalogues struct {
	byTag map[string]*Locale // by canonical BCP 47 tag
}

// loadCatalogues reads the embedded catalogues and, when dir is set, the
// ones in dir/locales: a file there for a language we ship changes the
// messages it names (the others stay), a file for another language adds
// it (keys it lacks come from English). Every file must be valid JSON
// whose keys all exist in the English catalogue, with the same
// placeholders, so that a typo is an error at startup.
func loadCatalogues(embedded fs.FS, dir string, missing func(lang, key string)) (*catalogues, error) {
	c := &catalogues{byTag: map[string]*Locale{}}
	read := func(fsys fs.FS, where string) error {
		names, err := fs.Glob(fsys, path.Join(localesDir, "*.json"))
		if err != nil {
			return err
		}
		for _, name := range names {
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(where, name), err)
			}
			if err := c.add(strings.TrimSuffix(path.Base(name), ".json"), b, missing); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(where, name), err)
			}
		}
		return nil
	}
	if err := read(embedded, "embedded templates"); err != nil {
		return nil, err
	}
	base := c.byTag[baseLanguage]
	if base == nil {
		return nil, fmt.Errorf("no %s.json catalogue in the embedded templates", baseLanguage)
	}
	known := maps.Clone(base.messages) // the keys and placeholders to check against
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, localesDir)); err == nil {
			if err := read(os.DirFS(dir), "templates_dir "+dir); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("templates_dir: %w", err)
		}
	}
	for tag, l := range c.byTag {
		if l != base {
			l.fallback = base
		}
		for key, m := range l.messages {
			bm, ok := known[key]
			if !ok {
				return nil, fmt.Errorf("catalogue %s: unknown key %q (not in %s.json)", tag, key, baseLanguage)
			}
			want := placeholders(strings.Join(bm.texts(), " "))
			for _, text := range m.texts() {
				if got := placeholders(text); !slices.Equal(got, want) && !subset(got, want) {
					return nil, fmt.Errorf("catalogue %s: %q uses placeholders %v; %s.json has %v", tag, key, got, baseLanguage, want)
				}
			}
		}
	}
	return c, nil
}

// subset reports whether every name in got is in want: a translation may
// leave a placeholder out (a plural form "one" often does), never add one.
func subset(got, want []string) bool {
	for _, g := range got {
		if !slices.Contains(want, g) {
			return false
		}
	}
	return true
}

// add merges one catalogue file into the language named by file.
func (c *catalogues) add(file string, b []byte, missing func(lang, key string)) error {
	tag, err := language.Parse(file)
	if err != nil {
		return fmt.Errorf("the file name is not a language tag (such as en or pt-BR): %w", err)
	}
	if !utf8.Valid(b) {
		return errors.New("not UTF-8")
	}
	var msgs map[string]message
	if err := json.Unmarshal(b, &msgs); err != nil {
		return err
	}
	l := c.byTag[tag.String()]
	if l == nil {
		l = &Locale{tag: tag, messages: map[string]message{}, missing: missing}
		c.byTag[tag.String()] = l
	}
	maps.Copy(l.messages, msgs)
	return nil
}

// tags lists the languages: English first, then the others by tag.
func (c *catalogues) tags() []string {
	tags := slices.Sorted(maps.Keys(c.byTag))
	slices.SortStableFunc(tags, func(a, b string) int {
		switch {
		case a == baseLanguage:
			return -1
		case b == baseLanguage:
			return 1
		}
		return 0
	})
	return tags
}

// languagePicker chooses the language of a page: the user's choice from
// the switch (a cookie), else the best match for Accept-Language, else the
// first offered.
type languagePicker struct {
	offered []*Locale
	byTag   map[string]*Locale
	matcher language.Matcher
}

// newLanguagePicker picks among the offered languages, the first the
// default.
func newLanguagePicker(offered []*Locale) *languagePicker {
	p := &languagePicker{offered: offered, byTag: map[string]*Locale{}}
	tags := make([]language.Tag, len(offered))
	for i, l := range offered {
		tags[i] = l.tag
		p.byTag[l.tag.String()] = l
	}
	p.matcher = language.NewMatcher(tags)
	return p
}

// maxAcceptLanguage bounds the Accept-Language header we parse; a longer
// one is ignored.
const maxAcceptLanguage = 512

// pick returns the locale for a request's language cookie value and
// Accept-Language header.
func (p *languagePicker) pick(cookie, acceptLanguage string) *Locale {
	if len(p.offered) == 1 {
		return p.offered[0]
	}
	if l, ok := p.byTag[cookie]; ok {
		return l
	}
	if acceptLanguage == "" || len(acceptLanguage) > maxAcceptLanguage {
		return p.offered[0]
	}
	prefs := parseAcceptLanguage(acceptLanguage)
	if len(prefs) == 0 {
		return p.offered[0]
	}
	_, i, conf := p.matcher.Match(prefs...)
	if conf == language.No || i < 0 || i >= len(p.offered) {
		return p.offered[0]
	}
	return p.offered[i]
}

// maxLanguageRanges bounds how many entries of Accept-Language are read.
const maxLanguageRanges = 32

// parseAcceptLanguage reads the language ranges of an Accept-Language
// header, best first. An entry that does not parse is skipped rather than
// spoiling the others.
func parseAcceptLanguage(header string) []language.Tag {
	type weighted struct {
		tag language.Tag
		q   float32
	}
	var ranges []weighted
	for i, entry := range strings.Split(header, ",") {
		if i == maxLanguageRanges {
			break
		}
		tags, q, err := language.ParseAcceptLanguage(entry)
		if err != nil || len(tags) != 1 || q[0] <= 0 {
			continue
		}
		ranges = append(ranges, weighted{tags[0], q[0]})
	}
	slices.SortStableFunc(ranges, func(a, b weighted) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	tags := make([]language.Tag, len(ranges))
	for i, r := range ranges {
		tags[i] = r.tag
	}
	return tags
}

// templateKeys returns the message keys that the t calls in the trees
// name, and an error, naming the place, for a t call whose key is not a
// quoted string.
func templateKeys(trees []*parse.Tree) ([]string, error) {
	var keys []string
	var bad error
	for _, tree := range trees {
		if tree == nil || tree.Root == nil {
			continue
		}
		var walk func(n parse.Node)
		walk = func(n parse.Node) {
			switch n := n.(type) {
			case *parse.ListNode:
				if n == nil {
					return
				}
				for _, c := range n.Nodes {
					walk(c)
				}
			case *parse.ActionNode:
				walk(n.Pipe)
			case *parse.IfNode:
				walk(n.Pipe)
				walk(n.List)
				walk(n.ElseList)
			case *parse.RangeNode:
				walk(n.Pipe)
				walk(n.List)
				walk(n.ElseList)
			case *parse.WithNode:
				walk(n.Pipe)
				walk(n.List)
				walk(n.ElseList)
			case *parse.TemplateNode:
				walk(n.Pipe)
			case *parse.PipeNode:
				if n == nil {
					return
				}
				for _, c := range n.Cmds {
					walk(c)
				}
			case *parse.CommandNode:
				if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "t" {
					if s, ok := argAt(n, 1).(*parse.StringNode); ok {
						keys = append(keys, s.Text)
					} else if bad == nil {
						where, _ := tree.ErrorContext(n)
						bad = fmt.Errorf("%s: t needs a quoted message key as its first argument", where)
					}
				}
				for _, a := range n.Args {
					walk(a)
				}
			}
		}
		walk(tree.Root)
	}
	return keys, bad
}

func argAt(n *parse.CommandNode, i int) parse.Node {
	if i < len(n.Args) {
		return n.Args[i]
	}
	return nil
}

// Tag is the language's BCP 47 tag.
func (l *Locale) Tag() string { return l.tag.String() }

// Has reports whether the language's catalogue (or its fallback) has key.
func (l *Locale) Has(key string) bool {
	if _, ok := l.messages[key]; ok {
		return true
	}
	return l.fallback != nil && l.fallback.Has(key)
}

// Embedded returns the embedded catalogue of a language, as the pages
// use it when no templates_dir changes it.
func Embedded(tag string) (*Locale, error) {
	cats, err := loadCatalogues(templates.FS, "", nil)
	if err != nil {
		return nil, err
	}
	if l := cats.byTag[tag]; l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("no embedded catalogue %q", tag)
}

// Keys are the message keys of the embedded base catalogue, sorted.
func Keys() ([]string, error) {
	base, err := Embedded(baseLanguage)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(base.messages)), nil
}
