package paths

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func TestEnsureRuntimeDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{"created", func(*testing.T, string) {}, ""},
		{"existing private", func(t *testing.T, dir string) { must(t, os.Mkdir(dir, 0o700)) }, ""},
		{"too open is tightened", func(t *testing.T, dir string) { must(t, os.Mkdir(dir, 0o777)); must(t, os.Chmod(dir, 0o777)) }, ""},
		{"symlink refused", func(t *testing.T, dir string) {
			target := filepath.Join(filepath.Dir(dir), "elsewhere")
			must(t, os.Mkdir(target, 0o700))
			must(t, os.Symlink(target, dir))
		}, "symlink"},
		{"file refused", func(t *testing.T, dir string) { must(t, os.WriteFile(dir, nil, 0o600)) }, "symlink or not a directory"},
		{"other owner refused", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to make a directory owned by someone else")
			}
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, 12345, 12345))
		}, "belongs to uid 12345"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pyro-rt")
			tt.setup(t, dir)
			err := EnsureRuntimeDir(dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(dir)
				if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
					t.Fatalf("after: %v %v", fi.Mode(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("err = %v, want %q (failed precondition)", err, tt.wantErr)
			}
			if errdefs.HintOf(err) == "" {
				t.Errorf("no hint on %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
