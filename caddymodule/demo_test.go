package caddymodule

import (
	"bytes"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
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

// TestDemoUpstreamHasViewport: the demo's upstream page (the Caddyfile's
// respond body, as Caddy adapts it) is readable on a phone.
func TestDemoUpstreamHasViewport(t *testing.T) {
	src, err := os.ReadFile(demoCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	// The adapted JSON escapes markup; read it as text.
	out = bytes.ReplaceAll(bytes.ReplaceAll(out, []byte(`\u003c`), []byte("<")), []byte(`\u003e`), []byte(">"))
	const want = `<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">`
	if !bytes.Contains(out, []byte("static_response")) || !bytes.Contains(out, []byte(want)) {
		t.Errorf("the demo upstream page has no viewport meta tag")
	}
}
