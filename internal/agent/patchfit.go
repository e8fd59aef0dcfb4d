package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bluekeyes/go-gitdiff/gitdiff"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
)

// Where a hunk applies, and what to say when it does not.

// hunkHeader matches a fragment header's line ranges.
var hunkHeader = lazyregexp.New(`^@@ [^@]* @@`)

// applyErr words a fragment that did not apply: the file, the hunk, and
// the line the file has against the one the patch expects.
func applyErr(guest string, f *gitdiff.File, err error, lines []string) error {
	var ae *gitdiff.ApplyError
	if !errors.As(err, &ae) || ae.Fragment == 0 || ae.Fragment > len(f.TextFragments) {
		if errors.Is(err, &gitdiff.Conflict{}) {
			return conflict(guest, strings.TrimPrefix(err.Error(), "conflict: "))
		}
		return errdefs.Wrap(errdefs.ErrConflict, err, "check the patch against the file; nothing was changed", "patch does not apply to %s", guest)
	}
	frag := f.TextFragments[ae.Fragment-1]
	head := strings.TrimSpace(hunkHeader.FindString(frag.Header()))
	where := fmt.Sprintf("hunk %d of %d (%s)", ae.Fragment, len(f.TextFragments), head)
	why := strings.TrimPrefix(ae.Unwrap().Error(), "conflict: ")
	if ae.FragmentLine > 0 && ae.FragmentLine <= len(frag.Lines) {
		want := frag.Lines[ae.FragmentLine-1].Line
		n := int(ae.Line)
		switch {
		case n >= 1 && n <= len(lines):
			why = fmt.Sprintf("line %d is %q, the patch expects %q", n, strings.TrimSuffix(lines[n-1], "\n"), strings.TrimSuffix(want, "\n"))
		case lines != nil:
			why = fmt.Sprintf("the file has %d lines, the patch expects line %d to be %q", len(lines), n, strings.TrimSuffix(want, "\n"))
		default:
			why = fmt.Sprintf("line %d differs from %q", n, strings.TrimSuffix(want, "\n"))
		}
	} else if lines != nil && strings.Contains(why, "fewer lines") {
		why = fmt.Sprintf("the file has %d lines; the hunk needs lines %d to %d", len(lines), frag.OldPosition, frag.OldPosition+frag.OldLines-1)
	}
	return conflict(guest, where+": "+why)
}

// readLines reads a file of size bytes as lines, each with its newline.
func readLines(r io.ReaderAt, size int64) ([]string, error) {
	data := make([]byte, size)
	if _, err := r.ReadAt(data, 0); err != nil && err != io.EOF {
		return nil, err
	}
	var lines []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, string(data))
			break
		}
		lines = append(lines, string(data[:i+1]))
		data = data[i+1:]
	}
	return lines, nil
}

// relocate moves each fragment whose lines are not where its header says
// to the nearest place they are, as `git apply` does (no fuzz: every
// context and deleted line must match), keeping the fragments in order;
// each offset found carries over to the next fragment's search.
func relocate(frags []*gitdiff.TextFragment, lines []string) {
	var offset int64
	floor := int64(0) // lines before this belong to earlier fragments
	for _, fr := range frags {
		if fr.OldPosition == 0 {
			continue
		}
		var pre []string
		for _, l := range fr.Lines {
			if l.Old() {
				pre = append(pre, l.Line)
			}
		}
		want := fr.OldPosition - 1 + offset
		at := int64(-1)
		for d := int64(0); at < 0 && (want-d >= floor || want+d+int64(len(pre)) <= int64(len(lines))); d++ {
			for _, c := range []int64{want - d, want + d} {
				if c >= floor && matchAt(lines, c, pre) {
					at = c
					break
				}
			}
		}
		if at < 0 {
			return // reported by the apply, at the place the header names
		}
		shift := at - (fr.OldPosition - 1)
		fr.OldPosition += shift
		fr.NewPosition += shift
		offset = shift
		floor = at + int64(len(pre))
	}
}

func matchAt(lines []string, at int64, pre []string) bool {
	if at < 0 || at+int64(len(pre)) > int64(len(lines)) {
		return false
	}
	for i, l := range pre {
		if lines[at+int64(i)] != l {
			return false
		}
	}
	return true
}
