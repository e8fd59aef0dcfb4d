package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{
		{"durable", WriteFile},
		{"unsynced", WriteFileUnsynced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "record.json")
			for _, content := range []string{"old", "new"} {
				if err := tt.write(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(p); err != nil || string(got) != content {
					t.Fatalf("content %q, %v; want %q", got, err, content)
				}
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}
