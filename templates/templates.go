// Package templates holds the HTML and CSS of the gate's own pages, embedded
// in the binary. An operator may override any file by name with the
// templates_dir option.
package templates

import "embed"

// FS holds every page template (*.html) and stylesheet (*.css).
//
//go:embed *.html *.css
var FS embed.FS
