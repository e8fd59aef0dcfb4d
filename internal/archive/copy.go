package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"

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
	dirs := map[string]bool{".": true}
	err := eachMember(ctx, tr, func(err error) error {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading the export")
	}, func(hdr *tar.Header, m Member) error {
		if err := parentsMade(m.Name, func(p string) bool { return dirs[p] }); err != nil {
			return err
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
			return reject(m.Name, "only directories, regular files and symlinks are exported")
		}
		if err := c.add(m.Name, size); err != nil {
			return err
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if size > 0 {
			if err := copyContent(tw, tr, size); err != nil {
				return fmt.Errorf("copying %s: %w", m.Name, err)
			}
		}
		if onEntry != nil {
			onEntry(int64(c.st.Entries), c.st.Bytes)
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return c.st, nil
}
