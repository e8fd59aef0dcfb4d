package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// WriteFiles writes the named entries of the directory root to w as a
// normalised tar stream, with the same checks as Write and the directories
// leading to them: for a chosen subset of a tree, such as the files git
// tracks. Names are slash separated and relative to root; a name that no
// longer exists on disk is skipped (a tracked file deleted in the work
// tree), one under .git is refused. The stats report ModeDirectory.
func WriteFiles(ctx context.Context, root string, names []string, w io.Writer, lim Limits) (Stats, error) {
	rels, err := withParents(root, names)
	if err != nil {
		return Stats{}, err
	}
	if _, err := writeEntries(ctx, root, rels, nil, lim); err != nil {
		return Stats{}, err
	}
	return emit(w, ModeDirectory, func(tw *tar.Writer) (Stats, error) { return writeEntries(ctx, root, rels, tw, lim) })
}

// withParents checks names, drops those missing on disk, and adds every
// parent directory, sorted so that parents come first.
func withParents(root string, names []string) ([]string, error) {
	set := map[string]bool{}
	for _, n := range names {
		clean, err := CleanName(n)
		if err != nil {
			return nil, refused(err)
		}
		if clean == "." {
			continue
		}
		if clean == ".git" || strings.HasPrefix(clean, ".git/") {
			return nil, reject(clean, "git's own files are never seeded")
		}
		if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(clean))); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		for p := clean; p != "." && !set[p]; p = path.Dir(p) {
			set[p] = true
		}
	}
	rels := make([]string, 0, len(set))
	for n := range set {
		rels = append(rels, n)
	}
	sort.Strings(rels)
	return rels, nil
}
