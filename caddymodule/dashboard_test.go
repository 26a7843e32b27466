package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardFile is the Grafana dashboard shipped in the docs.
const dashboardFile = "../docs/grafana-dashboard.json"

// metricNameRe finds this module's metric names in a PromQL expression.
var metricNameRe = regexp.MustCompile(`\bcaddy_two_factor_[a-zA-Z0-9_:]*`)

// dashboardMetrics returns the metric names that the dashboard's PromQL
// uses: in the panels' targets (expr) and in the template variables'
// queries (query, definition), wherever they are nested.
func dashboardMetrics(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					for _, name := range metricNameRe.FindAllString(s, -1) {
						seen[name] = true
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// metricFamilies reads Caddy's /metrics on the admin endpoint and returns
// each family's type, from its "# TYPE" line.
func metricFamilies(t *testing.T) map[string]string {
	t.Helper()
	body := metricsText(t)
	families := map[string]string{}
	for line := range strings.SplitSeq(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	return families
}

// servedAs returns the family a queried name belongs to: the name itself,
// or, for the _bucket, _sum and _count series of a histogram (_sum and
// _count of a summary), the histogram's name.
func servedAs(name string, families map[string]string) (string, error) {
	if _, ok := families[name]; ok {
		return name, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch families[base] {
		case "histogram":
			return base, nil
		case "summary":
			if suffix != "_bucket" {
				return base, nil
			}
		}
	}
	return "", fmt.Errorf("the dashboard queries %s, which Caddy's /metrics does not serve", name)
}

func TestServedAs(t *testing.T) {
	families := map[string]string{
		"caddy_two_factor_logins_total": "counter",
		"caddy_two_factor_wait_seconds": "histogram",
	}
	for name, want := range map[string]string{
		"caddy_two_factor_logins_total":        "caddy_two_factor_logins_total",
		"caddy_two_factor_wait_seconds_bucket": "caddy_two_factor_wait_seconds",
		"caddy_two_factor_wait_seconds_count":  "caddy_two_factor_wait_seconds",
		"caddy_two_factor_bogus_total":         "",
		"caddy_two_factor_logins_total_count":  "", // not a histogram
		"caddy_two_factor_logins":              "",
	} {
		got, err := servedAs(name, families)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("servedAs(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestDashboardMetricsExist: every metric the Grafana dashboard in docs/
// queries is served on the /metrics of a real Caddy with the module, after
// logins that move every counter's usual series; and every metric of the
// module has a panel.
func TestDashboardMetricsExist(t *testing.T) {
	names := dashboardMetrics(t, dashboardFile)
	if len(names) == 0 {
		t.Fatalf("%s queries no caddy_two_factor_ metric", dashboardFile)
	}

	g := newGate(t, gateOpts{extra: cheapArgon2})
	anon := g.browser()
	anon.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"wrong password"}})
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	b = g.browser()
	b.login("alice", testPassword, "/.auth/code")
	if r := b.post("/.auth/code", url.Values{"code": {e.codes[0]}}); r.status != http.StatusSeeOther {
		t.Fatalf("backup code: got %d, want 303", r.status)
	}

	families := metricFamilies(t)
	used := map[string]bool{}
	for _, name := range names {
		family, err := servedAs(name, families)
		if err != nil {
			t.Error(err)
			continue
		}
		used[family] = true
	}
	for family := range families {
		if strings.HasPrefix(family, "caddy_two_factor_") && !used[family] {
			t.Errorf("Caddy serves %s, but %s has no panel for it", family, dashboardFile)
		}
	}
}
