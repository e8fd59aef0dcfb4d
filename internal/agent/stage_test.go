package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// timedTar is mkTar with modification times.
func timedTar(t *testing.T, mtime time.Time, es ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body)), ModTime: mtime}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if e.size != 0 {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return &buf
}

// A push into a tree that has content merges into it as tar would:
// files replaced, others kept, directories merged and given the archive's
// modes and times, later members replacing earlier ones.
func TestPutArchiveMergesIntoExistingTree(t *testing.T) {
	c, root := serve(t)
	app := filepath.Join(root, "workspace", "app")
	os.MkdirAll(app, 0o755)
	os.Mkdir(filepath.Join(app, "src"), 0o700)
	os.WriteFile(filepath.Join(app, "src", "main.go"), []byte("old"), 0o600)
	os.WriteFile(filepath.Join(app, "src", "keep.go"), []byte("keep"), 0o644)
	os.Symlink("nowhere", filepath.Join(app, "link"))
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	ar := timedTar(t, mtime,
		entry{name: "src/", typ: tar.TypeDir, mode: 0o750},
		entry{name: "src/main.go", body: "first", mode: 0o644},
		entry{name: "src/main.go", body: "second", mode: 0o640},
		entry{name: "link", body: "now a file", mode: 0o644},
		entry{name: "ro/", typ: tar.TypeDir, mode: 0o555},
		entry{name: "ro/inside", body: "in a read-only dir", mode: 0o444},
		entry{name: "deep/er/file", body: "parents made"},
	)
	r, err := c.PutArchive(t.Context(), agentproto.PutArchiveRequest{Dest: "/workspace/app", Root: "/workspace"}, ar)
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries != 7 {
		t.Errorf("entries = %d, want 7", r.Entries)
	}
	got := map[string]string{}
	filepath.WalkDir(app, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(app, p)
		fi, _ := os.Lstat(p)
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			desc += " " + string(b)
		}
		if rel != "." && !strings.HasPrefix(rel, "deep") && rel != "src/keep.go" && !fi.ModTime().Equal(mtime) {
			desc += " mtime " + fi.ModTime().UTC().String()
		}
		got[rel] = desc
		return nil
	})
	want := map[string]string{
		".":            "drwxr-xr-x",
		"src":          "drwxr-x---",
		"src/main.go":  "-rw-r----- second",
		"src/keep.go":  "-rw-r--r-- keep",
		"link":         "-rw-r--r-- now a file",
		"ro":           "dr-xr-xr-x",
		"ro/inside":    "-r--r--r-- in a read-only dir",
		"deep":         "drwxr-xr-x",
		"deep/er":      "drwxr-xr-x",
		"deep/er/file": "-rw-r--r-- parents made",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tree (-want +got)\n%s", d)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "workspace")); len(ents) != 1 {
		t.Errorf("workspace has %v, want only app (staging removed)", ents)
	}
}

// Archives that end early, or that are not tar at all, change nothing;
// gzip'd archives are accepted.
func TestPutArchiveStreams(t *testing.T) {
	c, root := serve(t)
	os.WriteFile(filepath.Join(root, "workspace", "keep.txt"), []byte("keep"), 0o644)
	full := mkTar(t, entry{name: "a.txt", body: "aaaa"}, entry{name: "b.txt", body: strings.Repeat("b", 3000)})
	cut := bytes.NewBuffer(full.Bytes()[:512+512+512+1000]) // inside b.txt's content
	before := snapshot(t, root)
	for name, ar := range map[string]*bytes.Buffer{"cut short": cut, "not tar": bytes.NewBufferString(strings.Repeat("junk", 400))} {
		_, err := c.PutArchive(t.Context(), agentproto.PutArchiveRequest{Dest: "/workspace", Root: "/workspace"}, ar)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
		if d := cmp.Diff(before, snapshot(t, root)); d != "" {
			t.Errorf("%s: tree changed (-before +after)\n%s", name, d)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(mkTar(t, entry{name: "z.txt", body: "zipped"}).Bytes())
	zw.Close()
	if _, err := c.PutArchive(t.Context(), agentproto.PutArchiveRequest{Dest: "/workspace/z", Root: "/workspace"}, &gz); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "workspace", "z", "z.txt")); err != nil || string(b) != "zipped" {
		t.Errorf("z.txt = %q, %v", b, err)
	}
}

// Big files take the O_DIRECT path (when the filesystem has it): content
// whole, including a tail that is not a whole block.
func TestPutArchiveBigFiles(t *testing.T) {
	c, root := serve(t)
	body := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + i/4096)
		}
		return string(b)
	}
	files := map[string]string{"exact": body(2 << 20), "tail": body(1<<20 + 1234), "small": body(5000)}
	var es []entry
	for name, b := range files {
		es = append(es, entry{name: name, body: b})
	}
	if _, err := c.PutArchive(t.Context(), agentproto.PutArchiveRequest{Dest: "/workspace/big", Root: "/workspace"}, mkTar(t, es...)); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, "workspace", "big", name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %d bytes, %v; want %d bytes as sent", name, len(got), err, len(want))
		}
	}
}
