package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// ErrInsecureKeyFile is wrapped by LoadOrCreateKeyFile's error when the key
// file can be read or written by its group or by others.
var ErrInsecureKeyFile = errors.New("encryption key file is accessible by group or others")

// maxKeyFileSize bounds how much of a key file is read; a key is 44 bytes
// of base64, or 64 of hex.
const maxKeyFileSize = 1024

// LoadOrCreateKeyFile reads the key stored at path as base64 (or hex) text;
// surrounding white space such as a trailing newline is ignored.
//
// If there is no file at path and mayCreate is true, it generates a key
// from crypto/rand and writes it there, creating missing parent folders
// with mode 0700 and the file with mode 0600, and reports created. The file
// is written atomically: to a new temporary file in the same folder, synced
// to disk, then linked into place, which fails rather than replace a file
// that appeared in the meantime (another process starting at the same time),
// in which case that file's key is loaded instead. A key file is never
// overwritten.
//
// If there is no file and mayCreate is false, the error wraps ErrNoKeyFile.
// Except on Windows, a file whose mode grants any permission to group or
// others is refused with an error wrapping ErrInsecureKeyFile that tells
// the operator to run chmod 600 on it.
func LoadOrCreateKeyFile(path string, mayCreate bool) (k Key, created bool, err error) {
	k, err = loadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if !mayCreate {
		return Key{}, false, fmt.Errorf("%w: %s", ErrNoKeyFile, path)
	}
	k, err = createKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		k, err = loadKeyFile(path)
		return k, false, err
	}
	if err != nil {
		return Key{}, false, err
	}
	return k, true, nil
}

// loadKeyFile reads and checks an existing key file. A missing file gives
// an error wrapping fs.ErrNotExist.
func loadKeyFile(path string) (Key, error) {
	// Stat before opening so that a FIFO or device is refused, not opened.
	fi, err := os.Stat(path)
	if err != nil {
		return Key{}, fmt.Errorf("read encryption key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("encryption key file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("read encryption key file: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return Key{}, fmt.Errorf("read encryption key file: %w", err)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return Key{}, fmt.Errorf("%w: %s has mode %04o; restrict it with: chmod 600 %s",
			ErrInsecureKeyFile, path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(data)
	if err != nil {
		return Key{}, fmt.Errorf("read encryption key file: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return Key{}, fmt.Errorf("encryption key file %s: %w", path, ErrInvalidKey)
	}
	k, err := ParseKey(string(data))
	if err != nil {
		return Key{}, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	return k, nil
}

// createKeyFile writes a new random key to path. If a file already exists
// at path it is left alone and the error wraps fs.ErrExist.
func createKeyFile(path string) (Key, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Key{}, fmt.Errorf("create encryption key folder: %w", err)
	}
	k, err := NewKey()
	if err != nil {
		return Key{}, err
	}
	// os.CreateTemp opens with O_CREATE|O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Key{}, fmt.Errorf("create encryption key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a successful link, path keeps the file
	if err := writeAndSync(tmp, k.encode()+"\n"); err != nil {
		return Key{}, fmt.Errorf("write encryption key file: %w", err)
	}
	if err := publish(tmpName, path); err != nil {
		return Key{}, err
	}
	if err := syncDir(dir); err != nil {
		return Key{}, fmt.Errorf("sync encryption key folder: %w", err)
	}
	return k, nil
}

// writeAndSync makes f private, writes s, flushes it to disk and closes f.
func writeAndSync(f *os.File, s string) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(s)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// publish gives the complete file tmp the name path, unless path exists.
// A hard link does that atomically. Where links are not supported it falls
// back to checking for path and renaming, which leaves a tiny window for a
// file created at the same moment by another process.
func publish(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create encryption key file: %w", err)
	}
	if _, serr := os.Lstat(path); serr == nil {
		return fmt.Errorf("create encryption key file %s: %w", path, fs.ErrExist)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("create encryption key file: %w", err)
	}
	return nil
}

// syncDir flushes dir's entries to disk, so the new name survives a crash.
// Windows can't open a folder for syncing, so there this step is skipped.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
