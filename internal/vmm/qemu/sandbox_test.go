package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// A fake QEMU that accepts -sandbox or not, and counts how often it ran.
func fakeQEMU(t *testing.T, accepts bool) (bin, count string) {
	t.Helper()
	dir := t.TempDir()
	bin, count = filepath.Join(dir, "qemu"), filepath.Join(dir, "count")
	rc := "0"
	if !accepts {
		rc = "1"
	}
	script := "#!/bin/sh\necho x >> " + count + "\nexit " + rc + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, count
}

func TestSandboxProbe(t *testing.T) {
	tests := []struct {
		name    string
		accepts bool
		env     string
		want    string
		runs    int
	}{
		{"seccomp build", true, "", SandboxPolicy, 1},
		{"no seccomp", false, "", "", 1},
		{"turned off", true, "off", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PYRO_CACHE_DIR", t.TempDir())
			t.Setenv("PYRO_QEMU_SANDBOX", tt.env)
			bin, count := fakeQEMU(t, tt.accepts)
			for i := 0; i < 3; i++ {
				if got := Sandbox(bin); got != tt.want {
					t.Fatalf("Sandbox = %q, want %q", got, tt.want)
				}
			}
			// Another process (an empty memo) reads the cache file.
			sandboxMemo.Delete(bin)
			if got := Sandbox(bin); got != tt.want {
				t.Fatalf("Sandbox after reload = %q, want %q", got, tt.want)
			}
			data, _ := os.ReadFile(count)
			if n := len(data) / 2; n != tt.runs {
				t.Fatalf("probed %d times, want %d", n, tt.runs)
			}
		})
	}
}
