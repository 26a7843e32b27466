//go:build unix

package caddymodule

import (
	"io/fs"
	"syscall"
)

// diskUsage is the space a file takes on disk (badger preallocates its
// files sparsely, so their size says little).
func diskUsage(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
