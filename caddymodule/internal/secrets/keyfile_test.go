package secrets

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("Unix file modes")
	}
}

// writeFile writes data to path with exactly mode perm, whatever the umask.
func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// assertOnlyFile fails unless name is the only entry of dir (no temporary
// files left behind).
func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("got entries %q in %s, want only %q", names, dir, name)
	}
}

func TestKeyFileCreateAndReload(t *testing.T) {
	skipOnWindows(t)
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "key")

	k, created, err := LoadOrCreateKeyFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Errorf("got created=false, want true")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("got file mode %04o, want 0600", got)
	}
	for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s: got folder mode %04o, want 0700", d, got)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := k.encode() + "\n"; string(data) != want {
		t.Errorf("got file content of %d bytes, want base64 key and newline (%d bytes)", len(data), len(want))
	}
	assertOnlyFile(t, filepath.Dir(path), "key")

	for _, mayCreate := range []bool{false, true} {
		again, created, err := LoadOrCreateKeyFile(path, mayCreate)
		if err != nil {
			t.Fatalf("reload (mayCreate=%v): %v", mayCreate, err)
		}
		if created {
			t.Errorf("reload (mayCreate=%v): got created=true, want false", mayCreate)
		}
		if again != k {
			t.Errorf("reload (mayCreate=%v): got a different key, want the created one", mayCreate)
		}
	}
}

func TestKeyFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key")
	_, created, err := LoadOrCreateKeyFile(path, false)
	if !errors.Is(err, ErrNoKeyFile) {
		t.Errorf("got error %v, want ErrNoKeyFile", err)
	}
	if created {
		t.Errorf("got created=true, want false")
	}
	if err != nil && !strings.Contains(err.Error(), path) {
		t.Errorf("got error %q, want it to name %s", err, path)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got folder stat error %v, want nothing created", err)
	}
}

func TestKeyFileNeverOverwritten(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	existing := base64.StdEncoding.EncodeToString(testKeyBytes) + "\n"
	writeFile(t, path, existing, 0o600)

	k, created, err := LoadOrCreateKeyFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Errorf("got created=true, want false")
	}
	if k != mustKey(t, testKeyBytes) {
		t.Errorf("got a different key, want the existing one")
	}

	// The path taken when another process creates the file between the
	// first look and the link.
	if _, err := createKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("createKeyFile over an existing file: got %v, want fs.ErrExist", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != existing {
		t.Errorf("got the key file changed, want it untouched")
	}
	assertOnlyFile(t, dir, "key")
}

func TestKeyFileInsecureMode(t *testing.T) {
	skipOnWindows(t)
	content := base64.StdEncoding.EncodeToString(testKeyBytes) + "\n"
	tests := []struct {
		perm    os.FileMode
		wantErr bool
	}{
		{0o600, false},
		{0o400, false},
		{0o700, false},
		{0o640, true},
		{0o604, true},
		{0o660, true},
		{0o644, true},
		{0o620, true},
		{0o602, true},
		{0o610, true},
		{0o666, true},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "key")
		writeFile(t, path, content, tt.perm)
		_, _, err := LoadOrCreateKeyFile(path, true)
		if (err != nil) != tt.wantErr {
			t.Errorf("mode %04o: got error %v, want error: %v", tt.perm, err, tt.wantErr)
			continue
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrInsecureKeyFile) {
			t.Errorf("mode %04o: got %v, want ErrInsecureKeyFile", tt.perm, err)
		}
		if !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: got %q, want it to say chmod 600 %s", tt.perm, err, path)
		}
	}
}

func TestKeyFileContents(t *testing.T) {
	skipOnWindows(t)
	tests := []struct {
		name    string
		content string
		wantErr error
	}{
		{"base64 without newline", base64.StdEncoding.EncodeToString(testKeyBytes), nil},
		{"raw url base64", base64.RawURLEncoding.EncodeToString(testKeyBytes) + "\n", nil},
		{"hex", hex.EncodeToString(testKeyBytes) + "\r\n", nil},
		{"empty", "", ErrInvalidKey},
		{"short", base64.StdEncoding.EncodeToString(testKeyBytes[:16]) + "\n", ErrInvalidKey},
		{"zero key", base64.StdEncoding.EncodeToString(make([]byte, KeySize)) + "\n", ErrInvalidKey},
		{"too large", strings.Repeat(" ", maxKeyFileSize) + base64.StdEncoding.EncodeToString(testKeyBytes), ErrInvalidKey},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "key")
		writeFile(t, path, tt.content, 0o600)
		k, created, err := LoadOrCreateKeyFile(path, true)
		if created {
			t.Errorf("%s: got created=true, want false", tt.name)
		}
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: got %v, want %v", tt.name, err, tt.wantErr)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Errorf("%s: got the file changed, want it untouched", tt.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: got %v, want nil", tt.name, err)
			continue
		}
		if k != mustKey(t, testKeyBytes) {
			t.Errorf("%s: got a different key, want the file's", tt.name)
		}
	}
}

func TestKeyFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	_, created, err := LoadOrCreateKeyFile(dir, true)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("folder as key file: got %v, want a not-a-regular-file error", err)
	}
	if created {
		t.Errorf("got created=true, want false")
	}
}
