package caddymodule

import (
	"html"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// missingKeys records the message keys pages asked for that no catalogue
// has; TestMain fails the run on any.
type missingKeys struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (m *missingKeys) add(lang, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]bool{}
	}
	m.keys[lang+": "+key] = true
}

func (m *missingKeys) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.keys))
}

// catalogueText returns a message of the embedded catalogues, for tests that
// look for it on a page.
func catalogueText(t *testing.T, lang, key string, args ...any) string {
	t.Helper()
	l, err := ui.Embedded(lang)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Has(key) {
		t.Fatalf("catalogue %s has no key %q", lang, key)
	}
	return html.EscapeString(l.T(key, args...))
}

// firstLine is the first line of s.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
