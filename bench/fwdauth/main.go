// Command fwdauth is a minimal forward-auth server, the design of the
// self-hosted 2FA peers that sit behind Caddy's forward_auth: for every
// request Caddy asks it, with a subrequest, whether the session cookie is
// good. It does the least such a server can do (one map lookup), so the
// load test measures the cost of the design, not of a product.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18084", "listen address")
	cookie := flag.String("cookie", "fwd_session", "session cookie name")
	token := flag.String("token", "", "the one valid session token (required)")
	user := flag.String("user", "alice", "user name of that session")
	flag.Parse()
	if *token == "" {
		log.Fatal("fwdauth: -token is required")
	}
	sessions := map[string]string{*token: *user}
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := r.Cookie(*cookie)
			if err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			name, ok := sessions[c.Value]
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Remote-User", name)
			w.WriteHeader(http.StatusOK)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
