package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestUserPlaceholdersExpanded loads user lines whose name and hash come
// from the environment, as with basic_auth: the user logs in; a variable
// that is not set is an error naming the user, not an empty hash.
func TestUserPlaceholdersExpanded(t *testing.T) {
	t.Setenv("TWO_FACTOR_TEST_CAROL", "carol")
	t.Setenv("TWO_FACTOR_TEST_CAROL_HASH", testHash)
	g := newGate(t, gateOpts{extra: "user {env.TWO_FACTOR_TEST_CAROL} {env.TWO_FACTOR_TEST_CAROL_HASH}"})
	b := g.browser()
	b.login("carol", testPassword, "/")
	if r := b.get("/x"); r.status != http.StatusOK || !strings.Contains(r.body, `"Remote-User":["carol"]`) {
		t.Errorf("carol's request: got %d %.300s, want 200 with Remote-User carol", r.status, r.body)
	}
	g.browser().login("alice", testPassword, "/") // the plain lines still work
	unload(t)

	cfg := strings.Replace(g.config, "{env.TWO_FACTOR_TEST_CAROL_HASH}", "{env.TWO_FACTOR_TEST_UNSET_HASH}", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "user 2 (carol): the password hash")
	caddytest.AssertLoadError(t, cfg, "caddyfile", "{env.TWO_FACTOR_TEST_UNSET_HASH}\\\" is empty once expanded: set the variable")
	cfg = strings.Replace(g.config, "{env.TWO_FACTOR_TEST_CAROL}", "{env.TWO_FACTOR_TEST_UNSET_NAME}", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "user 2: the name \\\"{env.TWO_FACTOR_TEST_UNSET_NAME}\\\" is empty once expanded")
}
