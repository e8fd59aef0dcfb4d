package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a/b/c.txt": "abc", "a/d.txt": "d", "top.txt": "top", "ignored.log": "secret"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	os.Symlink("top.txt", filepath.Join(dir, "link"))
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755) // a submodule: its directory, not its files

	ctx := context.Background()
	var out bytes.Buffer
	st, err := WriteFiles(ctx, dir, []string{"top.txt", "a/b/c.txt", "a/d.txt", "link", "deleted.txt", "sub", "a/d.txt"}, &out, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/", "a/b/", "a/b/c.txt", "a/d.txt", "link", "sub/", "top.txt"}
	if diff := cmp.Diff(want, names(t, out.Bytes())); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if st.Mode != ModeDirectory || st.Entries != len(want) || st.Bytes != 7 || !strings.HasPrefix(st.Digest, "sha256:") {
		t.Errorf("stats %+v", st)
	}

	for _, tc := range []struct {
		name  string
		files []string
		setup func()
		want  string
	}{
		{"git internals", []string{".git/config"}, nil, "git's own files"},
		{"escaping name", []string{"../x"}, nil, "escapes"},
		{"absolute name", []string{"/etc/passwd"}, nil, "absolute"},
		{"escaping link", []string{"out"}, func() { os.Symlink("../../etc/passwd", filepath.Join(dir, "out")) }, "leaves the destination"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			var out bytes.Buffer
			_, err := WriteFiles(ctx, dir, tc.files, &out, DefaultLimits)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("%d bytes written before the files were refused", out.Len())
			}
		})
	}
	if _, err := WriteFiles(ctx, dir, []string{"top.txt", "a/d.txt"}, io.Discard, Limits{MaxBytes: 3}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("size limit: err = %v", err)
	}
	if _, err := WriteFiles(ctx, dir, []string{"a/b/c.txt"}, io.Discard, Limits{MaxEntries: 2}); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Errorf("entry limit: err = %v", err)
	}
}
