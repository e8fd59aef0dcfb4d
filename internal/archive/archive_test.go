package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

type member struct {
	name, link string
	typ        byte
	body       string
}

func writeTar(t *testing.T, path string, gz bool, members []member) {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: typ, Mode: 0o644}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m.body))
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	eachInTar(t, data, func(h *tar.Header, _ []byte) { out = append(out, h.Name) })
	return out
}

// eachInTar calls f with every member of the tar data and its content.
func eachInTar(t *testing.T, data []byte, f func(h *tar.Header, body []byte)) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f(h, body)
	}
}

func TestArchives(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		wantErr string
	}{
		{"good", []member{{name: "a/", typ: tar.TypeDir}, {name: "a/b.txt", body: "hi"}, {name: "l", typ: tar.TypeSymlink, link: "a/b.txt"}, {name: "h", typ: tar.TypeLink, link: "a/b.txt"}}, ""},
		{"dotdot", []member{{name: "../x", body: "x"}}, "escapes"},
		{"nested dotdot", []member{{name: "a/../../x", body: "x"}}, "escapes"},
		{"absolute", []member{{name: "/etc/passwd", body: "x"}}, "absolute"},
		{"symlink out", []member{{name: "l", typ: tar.TypeSymlink, link: "../../etc"}}, "leaves the destination"},
		{"symlink abs", []member{{name: "l", typ: tar.TypeSymlink, link: "/etc"}}, "absolute"},
		{"hardlink out", []member{{name: "h", typ: tar.TypeLink, link: "../secret"}}, "escapes"},
		{"fifo", []member{{name: "p", typ: tar.TypeFifo}}, "FIFOs"},
		{"device", []member{{name: "d", typ: tar.TypeChar}}, "device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, gz := range []bool{false, true} {
				ext := ".tar"
				if gz {
					ext = ".tgz"
				}
				src := filepath.Join(t.TempDir(), "in"+ext)
				writeTar(t, src, gz, tc.members)
				var out bytes.Buffer
				st, err := Write(context.Background(), src, &out, DefaultLimits)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
						t.Fatalf("err = %v, want invalid argument containing %q", err, tc.wantErr)
					}
					if out.Len() != 0 {
						t.Fatalf("%d bytes written before the archive was rejected", out.Len())
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode != ModeTarArchive || st.Entries != 4 || st.Bytes != 2 || !strings.HasPrefix(st.Digest, "sha256:") {
					t.Fatalf("stats = %+v", st)
				}
				if got := strings.Join(names(t, out.Bytes()), ","); got != "a/,a/b.txt,l,h" {
					t.Fatalf("members = %s", got)
				}
			}
		})
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "main.c"), []byte("int main(){}"), 0o644)
	os.Symlink("src/main.c", filepath.Join(dir, "link"))
	var out bytes.Buffer
	st, err := Write(context.Background(), dir, &out, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != ModeDirectory || st.Entries != 3 || st.Bytes != 12 {
		t.Fatalf("stats = %+v", st)
	}
	// Same tree, same digest: the stream is deterministic.
	st2, _ := Write(context.Background(), dir, io.Discard, DefaultLimits)
	if st2.Digest != st.Digest {
		t.Fatalf("digest changed between runs")
	}

	os.Symlink("/etc/passwd", filepath.Join(dir, "bad"))
	if _, err := Write(context.Background(), dir, io.Discard, DefaultLimits); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("escaping symlink in a directory: err = %v", err)
	}
	os.Remove(filepath.Join(dir, "bad"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := Write(context.Background(), dir, &out, DefaultLimits); err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("fifo in a directory: err = %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("bytes written before the tree was rejected")
	}
}

func TestLimitsAndKinds(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, 1000), 0o644)
	if _, err := Write(context.Background(), dir, io.Discard, Limits{MaxBytes: 999}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("over-size: err = %v", err)
	}
	if _, err := Kind(filepath.Join(dir, "missing")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing path: err = %v", err)
	}
	if _, err := Kind(filepath.Join(dir, "big")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("plain file: err = %v", err)
	}
}

// Validate counts what Write would send and refuses what it would refuse,
// without reading a file's contents (an unreadable file passes; Write,
// which reads it, fails on it).
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "main.c"), []byte("int main(){}"), 0o644)
	os.Symlink("src/main.c", filepath.Join(dir, "link"))
	ctx := context.Background()
	want, err := Write(ctx, dir, io.Discard, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Validate(ctx, dir, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got.Mode != want.Mode || got.Entries != want.Entries || got.Bytes != want.Bytes || got.Digest != "" {
		t.Fatalf("Validate = %+v, Write = %+v", got, want)
	}
	if _, err := Validate(ctx, dir, Limits{MaxBytes: 11}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("over-size: err = %v", err)
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, "bad"))
	if _, err := Validate(ctx, dir, DefaultLimits); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("escaping symlink: err = %v", err)
	}
	os.Remove(filepath.Join(dir, "bad"))
	if os.Getuid() != 0 {
		os.Chmod(filepath.Join(dir, "src", "main.c"), 0)
		if _, err := Validate(ctx, dir, DefaultLimits); err != nil {
			t.Fatalf("Validate read a file's contents: %v", err)
		}
	}
}
