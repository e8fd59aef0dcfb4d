package aptsource

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestMirror(t *testing.T) {
	t.Setenv(EnvMirror, "")
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"none", nil, ""},
		{"classic", map[string]string{
			"sources.list": "# a comment\ndeb-src http://src.example.com/debian bookworm main\n" +
				"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.com/debian/ bookworm main contrib\n",
		}, "http://mirror.example.com/debian"},
		{"deb822 skips security and disabled", map[string]string{
			"sources.list.d/a.sources": "Types: deb\nURIs: http://off.example.com/debian\nSuites: bookworm\nEnabled: no\n\n" +
				"Types: deb\nURIs: http://sec.example.com/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
				"Types: deb deb-src\n# comment\nURIs: http://deb822.example.com/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
		}, "http://deb822.example.com/debian"},
		{"sources.list before sources.list.d", map[string]string{
			"sources.list":             "deb http://first.example.com/debian bookworm main\n",
			"sources.list.d/z.sources": "Types: deb\nURIs: http://second.example.com/debian\nSuites: bookworm\n",
		}, "http://first.example.com/debian"},
		{"other suites only", map[string]string{
			"sources.list": "deb http://mirror.example.com/debian trixie main\n",
		}, ""},
		{"disabled file names are ignored", map[string]string{
			"sources.list.d/x.sources.disabled": "Types: deb\nURIs: http://x.example.com/debian\nSuites: bookworm\n",
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, tt.files)
			if got := Mirror(root, "bookworm"); got != tt.want {
				t.Errorf("Mirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMirrorOverride(t *testing.T) {
	t.Setenv(EnvMirror, "http://override.example.com/debian")
	root := writeTree(t, map[string]string{"sources.list": "deb http://mirror.example.com/debian bookworm main\n"})
	if got := Mirror(root, "bookworm"); got != "http://override.example.com/debian" {
		t.Errorf("Mirror = %q", got)
	}
}

func TestHosts(t *testing.T) {
	root := writeTree(t, map[string]string{
		"sources.list":             "deb http://B.example.com/debian bookworm main\n",
		"sources.list.d/a.sources": "Types: deb\nURIs: http://a.example.com/debian http://b.example.com:8080/x\nSuites: bookworm\n",
	})
	if diff := cmp.Diff([]string{"a.example.com", "b.example.com"}, Hosts(root)); diff != "" {
		t.Error(diff)
	}
}
