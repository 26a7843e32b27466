// Package templates holds the HTML and CSS of the gate's own pages, embedded
// in the binary. An operator may override any file by name with the
// templates_dir option.
package templates

import "embed"

// FS holds every page template (*.html), the stylesheet (*.css), the
// script (*.js) and the message catalogues (locales/<language>.json).
//
//go:embed *.html *.css *.js locales/*.json
var FS embed.FS
