package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Copy holds a guest's export to the same member policy as Extract: what
// it writes is only what a good stream holds, with permission bits only.
func TestCopy(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		stream  func([]byte) []byte // spoils the stream
		wantErr string
		class   error // of wantErr; ErrInvalidArgument when nil
	}{
		{name: "good", members: []member{{name: "a/", typ: tar.TypeDir}, {name: "a/b.txt", body: "hi"}, {name: "l", typ: tar.TypeSymlink, link: "a/b.txt"}}},
		{name: "dotdot", members: []member{{name: "../x", body: "x"}}, wantErr: "escapes"},
		{name: "absolute", members: []member{{name: "/tmp/x", body: "x"}}, wantErr: "absolute"},
		{name: "through own symlink", members: []member{{name: "s", typ: tar.TypeSymlink, link: "."}, {name: "s/x", body: "x"}}, wantErr: "is a symlink"},
		{name: "through a file", members: []member{{name: "f", body: "x"}, {name: "f/x", body: "x"}}, wantErr: "not a directory"},
		{name: "parent never made", members: []member{{name: "d/x", body: "x"}}, wantErr: "not a directory of the archive"},
		{name: "symlink out", members: []member{{name: "l", typ: tar.TypeSymlink, link: "../../etc"}}, wantErr: "leaves the destination"},
		{name: "symlink led out by a later one", members: []member{{name: "l", typ: tar.TypeSymlink, link: "x/.."},
			{name: "x", typ: tar.TypeSymlink, link: "."}}, wantErr: `refusing "l": link to x/.. leaves the destination`},
		{name: "hard link", members: []member{{name: "f", body: "x"}, {name: "h", typ: tar.TypeLink, link: "f"}}, wantErr: "only directories, regular files and symlinks"},
		{name: "fifo", members: []member{{name: "p", typ: tar.TypeFifo}}, wantErr: "FIFOs"},
		{name: "device", members: []member{{name: "d", typ: tar.TypeChar}}, wantErr: "device"},
		{name: "truncated", members: []member{{name: "f", body: strings.Repeat("x", 4096)}},
			stream: func(b []byte) []byte { return b[:1024] }, wantErr: "copying f: unexpected EOF", class: io.ErrUnexpectedEOF},
		{name: "not a tar", members: nil, stream: func([]byte) []byte { return bytes.Repeat([]byte{1}, 1024) }, wantErr: "reading the export"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tarStream(t, tc.members)
			if tc.stream != nil {
				in = tc.stream(in)
			}
			var out bytes.Buffer
			tw := tar.NewWriter(&out)
			var seen [2]int64
			st, err := Copy(context.Background(), bytes.NewReader(in), tw, DefaultLimits, func(n, b int64) { seen = [2]int64{n, b} })
			if tc.wantErr != "" {
				class := tc.class
				if class == nil {
					class = errdefs.ErrInvalidArgument
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, class) {
					t.Fatalf("err = %v, want %v containing %q", err, class, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tw.Close()
			if st.Entries != 3 || st.Bytes != 2 || seen != [2]int64{3, 2} {
				t.Errorf("stats %+v, reported %v", st, seen)
			}
			var got []string
			eachInTar(t, out.Bytes(), func(h *tar.Header, body []byte) {
				got = append(got, fmt.Sprintf("%s %c %q %q %o", h.Name, h.Typeflag, h.Linkname, body, h.Mode))
			})
			want := []string{`a/ 5 "" "" 755`, `a/b.txt 0 "" "hi" 755`, `l 2 "a/b.txt" "" 777`}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("copied (-want +got):\n%s", diff)
			}
		})
	}
	// The limits hold before a member's content is copied.
	s := tarStream(t, []member{{name: "a", body: "12345"}, {name: "b", body: "x"}})
	for _, lim := range []Limits{{MaxEntries: 1}, {MaxBytes: 4}} {
		var out bytes.Buffer
		if _, err := Copy(context.Background(), bytes.NewReader(s), tar.NewWriter(&out), lim, nil); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("%+v: %v", lim, err)
		}
	}
}
