//go:build !unix

package caddymodule

import "io/fs"

// diskUsage is the file's size where its blocks are not known.
func diskUsage(info fs.FileInfo) int64 { return info.Size() }
