package caddymodule

import (
	"testing"
)

// BenchmarkServerAssertion is BenchmarkServer's two_factor site beside the
// same site with the signed assertion and auth_headers on: a whole request
// through Caddy's HTTP server with a live session. The session's token is
// signed at its first request and reused after (once a minute at most it
// is signed again), so the difference is a map look-up and four headers;
// internal/gate's BenchmarkAdmitAssertion/signed is what a signature costs.
func BenchmarkServerAssertion(b *testing.B) {
	dir := b.TempDir()
	users := []map[string]string{{"username": "alice", "password": testHash}}
	servers := loadBenchServers(b, map[string]any{
		"gate": benchServer("18994", map[string]any{"handler": "two_factor", "users": users, "storage_dir": dir + "/a"}),
		"assert": benchServer("18995", map[string]any{"handler": "two_factor", "users": users, "storage_dir": dir + "/b",
			"assertion_header": "X-Two-Factor-Assertion", "auth_headers": true}),
	})
	for _, tc := range []struct{ name, server string }{{"two_factor", "gate"}, {"two_factor+assertion", "assert"}} {
		srv := servers[tc.server]
		cookie := benchLogin(b, srv)
		b.Run(tc.name, func(b *testing.B) { benchRequests(b, srv, "Cookie", cookie) })
	}
}
