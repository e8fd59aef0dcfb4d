package agent

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"

	"github.com/pyro-mcp/pyro/api"
)

// diffContext is the number of unchanged lines around each hunk, as git's.
const diffContext = 3

// render fills e's patch text (git's format, which `git apply` and
// `pyro workspace patch apply` take) and its line counts. A type change is
// a deletion followed by an addition, as git writes it.
func (d *differ) render(e *api.DiffEntry, o, n side) error {
	var b strings.Builder
	if e.Status == api.StatusTypeChanged {
		if err := block(&b, e, o, side{}); err != nil {
			return err
		}
		if err := block(&b, e, side{}, n); err != nil {
			return err
		}
	} else if err := block(&b, e, o, n); err != nil {
		return err
	}
	e.Patch = b.String()
	return nil
}

// block writes one file's git block for o -> n and adds its line counts to e.
func block(b *strings.Builder, e *api.DiffEntry, o, n side) error {
	a, bn := quoteName("a/"+e.Path), quoteName("b/"+e.Path)
	fmt.Fprintf(b, "diff --git %s %s\n", a, bn)
	if e.Status == api.StatusModeChanged {
		fmt.Fprintf(b, "old mode %s\nnew mode %s\n", gitMode(o), gitMode(n))
		return nil
	}
	old, obig, err := content(o)
	if err != nil {
		return err
	}
	cur, nbig, err := content(n)
	if err != nil {
		return err
	}
	// The index line, as git writes it: it carries the mode of a file
	// whose mode did not change (a symlink's 120000, say).
	index := ""
	if !obig && !nbig {
		index = fmt.Sprintf("index %s..%s", blobID(o, old), blobID(n, cur))
	}
	switch {
	case !o.ok:
		fmt.Fprintf(b, "new file mode %s\n", gitMode(n))
	case !n.ok:
		fmt.Fprintf(b, "deleted file mode %s\n", gitMode(o))
	case gitMode(o) != gitMode(n):
		fmt.Fprintf(b, "old mode %s\nnew mode %s\n", gitMode(o), gitMode(n))
	case index != "":
		index += " " + gitMode(o)
	}
	if index != "" {
		b.WriteString(index + "\n")
	}
	from, to := a, bn
	if !o.ok {
		from = "/dev/null"
	}
	if !n.ok {
		to = "/dev/null"
	}
	if obig || nbig || binaryText(old) || binaryText(cur) {
		e.Binary = true
		if o.ok {
			e.OldSize = o.st.Size
		}
		if n.ok {
			e.NewSize = n.st.Size
		}
		fmt.Fprintf(b, "Binary files %s and %s differ\n", from, to)
		return nil
	}
	if len(old) == 0 && len(cur) == 0 {
		return nil // an empty file made or removed: the header says it all
	}
	u, err := udiff.ToUnifiedDiff(from, to, string(old), udiff.Lines(string(old), string(cur)), diffContext)
	if err != nil {
		return err
	}
	if len(u.Hunks) == 0 {
		return nil
	}
	fmt.Fprintf(b, "--- %s%s\n+++ %s%s\n", from, tabIfSpace(from), to, tabIfSpace(to))
	for _, h := range u.Hunks {
		var fromCount, toCount int
		for _, l := range h.Lines {
			switch l.Kind {
			case udiff.Delete:
				fromCount++
			case udiff.Insert:
				toCount++
			default:
				fromCount++
				toCount++
			}
		}
		fmt.Fprintf(b, "@@ -%s +%s @@\n", hunkRange(h.FromLine, fromCount), hunkRange(h.ToLine, toCount))
		for _, l := range h.Lines {
			switch l.Kind {
			case udiff.Delete:
				b.WriteByte('-')
				e.Deletions++
			case udiff.Insert:
				b.WriteByte('+')
				e.Insertions++
			default:
				b.WriteByte(' ')
			}
			b.WriteString(l.Content)
			if !strings.HasSuffix(l.Content, "\n") {
				b.WriteString("\n\\ No newline at end of file\n")
			}
		}
	}
	return nil
}

// blobID is the abbreviated id git gives content as a blob (zeros for
// none).
func blobID(sd side, data []byte) string {
	if !sd.ok {
		return "0000000"
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:7]
}

// hunkRange is one side of a hunk header as git writes it: "N" for one
// line, "N,M" otherwise, "N-1,0" (so "0,0" at the start) for none.
func hunkRange(start, count int) string {
	switch count {
	case 1:
		return fmt.Sprint(start)
	case 0:
		return fmt.Sprintf("%d,0", start-1)
	}
	return fmt.Sprintf("%d,%d", start, count)
}

// tabIfSpace is what git appends to a ---/+++ name with a space in it, so
// that the name's end is unambiguous.
func tabIfSpace(name string) string {
	if strings.ContainsRune(name, ' ') {
		return "\t"
	}
	return ""
}

// quoteName quotes a path as git does (core.quotePath): in double quotes,
// with C escapes and octal for control characters, quotes, backslashes and
// bytes above 0x7f, when it has any of them.
func quoteName(name string) string {
	need := false
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			need = true
			break
		}
	}
	if !need {
		return name
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch c {
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, `\%03o`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
