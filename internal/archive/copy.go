package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Copy re-writes a tar stream from an untrusted source (a guest's export)
// to tw, member by member, under the same checks as Extract: the member
// policy (Tree), parents that are directories of the archive, only
// directories, regular files and symlinks, permission bits only, and the
// limits, checked before a member's content is copied. A refused stream
// leaves tw with what was copied so far: the caller writes to a private
// file and removes it. onEntry, when set, hears the count of members so
// far and the bytes of content.
func Copy(ctx context.Context, r io.Reader, tw *tar.Writer, lim Limits, onEntry func(entries, bytes int64)) (Stats, error) {
	tr := tar.NewReader(r)
	c := &counter{lim: lim}
	tree := NewTree(TreeOptions{})
	dirs := map[string]bool{".": true}
	for {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading the export")
		}
		m, skip, err := tree.Add(hdr)
		if err != nil {
			return Stats{}, refused(err)
		}
		if skip {
			continue
		}
		for p := path.Dir(m.Name); p != "."; p = path.Dir(p) {
			if !dirs[p] {
				return Stats{}, reject(m.Name, fmt.Sprintf("its parent %q is not a directory of the archive", p))
			}
		}
		out := &tar.Header{Name: m.Name, Mode: int64(fs.FileMode(hdr.Mode) & fs.ModePerm), ModTime: hdr.ModTime, Format: tar.FormatPAX}
		var size int64
		switch m.Type {
		case tar.TypeDir:
			out.Typeflag, out.Name = tar.TypeDir, m.Name+"/"
			dirs[m.Name] = true
		case tar.TypeReg:
			out.Typeflag, out.Size = tar.TypeReg, hdr.Size
			size = hdr.Size
		case tar.TypeSymlink:
			out.Typeflag, out.Linkname, out.Mode = tar.TypeSymlink, m.Linkname, 0o777
		default:
			return Stats{}, reject(m.Name, "only directories, regular files and symlinks are exported")
		}
		if err := c.add(m.Name, size); err != nil {
			return Stats{}, err
		}
		if err := tw.WriteHeader(out); err != nil {
			return Stats{}, err
		}
		if size > 0 {
			if _, err := io.CopyN(tw, tr, size); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return Stats{}, fmt.Errorf("copying %s: %w", m.Name, err)
			}
		}
		if onEntry != nil {
			onEntry(int64(c.st.Entries), c.st.Bytes)
		}
	}
	if err := tree.Finish(); err != nil {
		return Stats{}, refused(err)
	}
	return c.st, nil
}
