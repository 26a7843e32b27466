// Command upstream is the application behind the proxies in the load
// test: it answers every request with a short body, as cheaply as Go's
// server allows, so that the proxies' own cost shows. GET /headers
// answers with the request's headers instead, one "Name: value" line
// each, so that the load test can see what a proxy sent.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	flag.Parse()
	body := []byte("hello from the upstream\n")
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if r.URL.Path == "/headers" {
				_ = r.Header.Write(w)
				return
			}
			_, _ = w.Write(body)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
