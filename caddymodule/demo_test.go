package caddymodule

import (
	"bytes"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// demoCaddyfile is the demo's Caddyfile at the top of the repository.
const demoCaddyfile = "../Caddyfile"

// TestDemoCaddyfileIsFormatted: Caddy warns at every start when its
// Caddyfile is not in `caddy fmt` form; the demo must start clean.
func TestDemoCaddyfileIsFormatted(t *testing.T) {
	src, err := os.ReadFile(demoCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	if got := caddyfile.Format(src); !bytes.Equal(got, src) {
		t.Errorf("the demo Caddyfile is not `caddy fmt` clean; formatted, it reads:\n%s", got)
	}
}
