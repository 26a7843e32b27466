// Command caddy is Caddy with its standard modules plus the two_factor
// handler. Run it like any Caddy: go run ./cmd/caddy run --config Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-two-factor/caddy-two-factor/caddymodule"
)

func main() {
	caddycmd.Main()
}
