package gate

import "testing"

// TestPathPatterns: the forms a step_up or require_two_factor path takes,
// matched on the clean path in any letter case.
func TestPathPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"*", []string{"/", "/a", "/admin/x"}, nil},
		{"/admin/*", []string{"/admin/", "/admin/x", "/ADMIN/x/y", "/Admin/", "/admin", "//admin//x", "/x/../admin/y"}, []string{"/administrator", "/x/admin/", "/adm"}},
		{"/admin*", []string{"/admin", "/administrator", "/admin/x", "/ADMIN"}, []string{"/adm", "/x/admin"}},
		{"/admin", []string{"/admin", "/Admin", "/admin/"}, []string{"/admin/x", "/admins"}},
		{"*.php", []string{"/x.php", "/a/b/C.PHP", "/x.php/"}, []string{"/php", "/x.phps"}},
	} {
		p, err := ParsePathPattern(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		for _, s := range tc.yes {
			if !p.matches(cleanPath(s)) {
				t.Errorf("%s does not match %s", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if p.matches(cleanPath(s)) {
				t.Errorf("%s matches %s", tc.pattern, s)
			}
		}
	}
	for _, bad := range []string{"", "admin", "/a/*/b", "**", "*a*", "/a b", "/a?x", "/a%2f", "/a\\b", "/a#b"} {
		if _, err := ParsePathPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	p, _ := ParsePathPattern("/admin/*")
	if n := testing.AllocsPerRun(100, func() { p.matches("/Admin/Users/42") }); n != 0 {
		t.Errorf("matching allocates %v times", n)
	}
}
