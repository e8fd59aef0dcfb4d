package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
)

// eachMember reads the tar stream tr to its end under the member policy
// (a Tree): it stops when ctx ends, classes a read error with badStream,
// refuses what the Tree refuses and passes over what it skips; every
// other member goes to each, with tr positioned at its content. Once the
// stream ended, the Tree checks every link against the whole tree. The one
// reading loop of Copy, Extract and copyArchive.
func eachMember(ctx context.Context, tr *tar.Reader, badStream func(error) error, each func(hdr *tar.Header, m Member) error) error {
	tree := NewTree(TreeOptions{})
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return badStream(err)
		}
		m, skip, err := tree.Add(hdr)
		if err != nil {
			return refused(err)
		}
		if skip {
			continue
		}
		if err := each(hdr, m); err != nil {
			return err
		}
	}
	return refused(tree.Finish())
}

// parentsMade refuses the member name unless each of its parents is a
// directory an earlier member of the archive made (isDir).
func parentsMade(name string, isDir func(string) bool) error {
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if !isDir(p) {
			return reject(name, fmt.Sprintf("its parent %q is not a directory of the archive", p))
		}
	}
	return nil
}

// copyContent copies exactly n bytes of a member's content: a stream that
// ends before is io.ErrUnexpectedEOF.
func copyContent(w io.Writer, r io.Reader, n int64) error {
	_, err := io.CopyN(w, r, n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
