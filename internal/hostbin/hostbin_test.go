package hostbin

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "my-qemu")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	tests := []struct {
		name     string
		env      string
		override string
		want     string
		wantErr  bool
	}{
		{"override wins", "/nonexistent", exe, exe, false},
		{"environment next", exe, "", exe, false},
		{"environment names a program on PATH", "my-qemu", "", exe, false},
		{"missing", "/nonexistent/qemu", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PYRO_QEMU_BIN", tt.env)
			got, err := QEMU.Find(tt.override)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Find = %q, %v; want %q (err %v)", got, err, tt.want, tt.wantErr)
			}
			if err != nil && (!errors.Is(err, errdefs.ErrFailedPrecondition) || errdefs.HintOf(err) == "") {
				t.Errorf("missing binary: %v (hint %q)", err, errdefs.HintOf(err))
			}
		})
	}
}
