package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func tarStream(t *testing.T, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: typ, Mode: 0o4755}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m.body))
	}
	tw.Close()
	return buf.Bytes()
}

// Extract defends itself whatever made the stream: every hostile member
// is refused and nothing lands outside the staging directory.
func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		wantErr string
	}{
		{"good", []member{{name: "a/", typ: tar.TypeDir}, {name: "a/b.txt", body: "hi"}, {name: "l", typ: tar.TypeSymlink, link: "a/b.txt"},
			{name: "h", typ: tar.TypeLink, link: "a/b.txt"}, {name: "a/b.txt", body: "again"}}, ""},
		{"dotdot", []member{{name: "../x", body: "x"}}, "escapes"},
		{"absolute", []member{{name: "/tmp/x", body: "x"}}, "absolute"},
		{"through own symlink", []member{{name: "s", typ: tar.TypeSymlink, link: "."}, {name: "s/x", body: "x"}}, "is a symlink"},
		{"through a file", []member{{name: "f", body: "x"}, {name: "f/x", body: "x"}}, "not a directory"},
		{"parent never made", []member{{name: "d/x", body: "x"}}, "not a directory"},
		{"symlink out", []member{{name: "l", typ: tar.TypeSymlink, link: "../../etc"}}, "leaves the destination"},
		{"symlink abs", []member{{name: "l", typ: tar.TypeSymlink, link: "/etc/shadow"}}, "absolute"},
		{"hardlink to a symlink", []member{{name: "l", typ: tar.TypeSymlink, link: "x"}, {name: "h", typ: tar.TypeLink, link: "l"}}, "not a regular file"},
		{"hardlink forward", []member{{name: "h", typ: tar.TypeLink, link: "later"}, {name: "later", body: "x"}}, "not a regular file"},
		{"hardlink out", []member{{name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}}, "escapes"},
		{"fifo", []member{{name: "p", typ: tar.TypeFifo}}, "FIFOs"},
		{"device", []member{{name: "d", typ: tar.TypeBlock}}, "device"},
		{"dir then file", []member{{name: "a/", typ: tar.TypeDir}, {name: "a", body: "x"}}, "another type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "stage")
			os.Mkdir(dir, 0o700)
			st, err := Extract(context.Background(), bytes.NewReader(tarStream(t, tc.members)), dir, DefaultLimits, nil)
			outside, _ := os.ReadDir(root)
			if len(outside) != 1 {
				t.Fatalf("something was written beside the staging directory: %v", outside)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Entries != 5 || st.Bytes != 7 {
				t.Errorf("stats %+v", st)
			}
			b, _ := os.ReadFile(filepath.Join(dir, "h"))
			if string(b) != "hi" {
				t.Errorf("hard link reads %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "a/b.txt")); string(b) != "again" {
				t.Errorf("a later member does not replace an earlier one: %q", b)
			}
			fi, _ := os.Stat(filepath.Join(dir, "a/b.txt"))
			if fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSetuid != 0 {
				t.Errorf("mode %v: want permission bits only", fi.Mode())
			}
			if target, _ := os.Readlink(filepath.Join(dir, "l")); target != "a/b.txt" {
				t.Errorf("symlink -> %q", target)
			}
		})
	}
}

// The limits hold on the host side too.
func TestExtractLimits(t *testing.T) {
	dir := t.TempDir()
	s := tarStream(t, []member{{name: "a", body: "12345"}, {name: "b", body: "x"}})
	if _, err := Extract(context.Background(), bytes.NewReader(s), dir, Limits{MaxEntries: 1}, nil); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Errorf("entries: %v", err)
	}
	dir = t.TempDir()
	if _, err := Extract(context.Background(), bytes.NewReader(s), dir, Limits{MaxBytes: 4}, nil); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("bytes: %v", err)
	}
}

// A directory written by Write and unpacked by Extract is the same tree.
func TestWriteExtractRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/e"), 0o750)
	os.WriteFile(filepath.Join(src, "d/e/f.txt"), []byte("deep"), 0o600)
	os.Symlink("d/e/f.txt", filepath.Join(src, "link"))
	var buf bytes.Buffer
	if _, err := Write(context.Background(), src, &buf, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	var seen int64
	st, err := Extract(context.Background(), &buf, dst, DefaultLimits, func(n int64) { seen = n })
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 4 || seen != 4 {
		t.Errorf("entries %d, reported %d", st.Entries, seen)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "link")); string(b) != "deep" {
		t.Errorf("through the link: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "d/e")); fi.Mode().Perm() != 0o750 {
		t.Errorf("dir mode %v", fi.Mode())
	}
}
