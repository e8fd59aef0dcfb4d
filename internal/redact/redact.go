// Package redact hides secret values in text: every value, its base64
// encodings and its URL encodings become [REDACTED]. A Redactor rewrites
// whole strings; a Stream rewrites a byte stream that arrives in chunks,
// holding back the end of a chunk that may be the start of a secret until
// the next chunk (or Flush) says whether it is, so that a value split
// across two writes is still caught.
//
// Redaction keeps secrets out of transcripts, logs and terminals; it is not
// a defence against the guest, which holds the values anyway.
package redact

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"sort"
)

// Mark replaces every secret form.
const Mark = "[REDACTED]"

// minEncoded is the shortest base64 form worth matching: shorter ones
// would hide ordinary text.
const minEncoded = 8

// Redactor knows the forms of a set of secret values. The zero value and
// nil redact nothing. It is immutable and safe for concurrent use.
type Redactor struct {
	forms [][]byte // longest first, so the longest match wins
	first [256]bool
	max   int
}

// New returns a redactor for values (empty ones are ignored).
func New(values ...string) *Redactor {
	seen := map[string]bool{}
	var forms [][]byte
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			forms = append(forms, []byte(f))
		}
	}
	for _, v := range values {
		if v == "" {
			continue
		}
		add(v)
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
		// A value inside a larger base64 stream is encoded in whole 3-byte
		// groups from wherever its group boundary falls: skip 0, 1 or 2 of
		// its bytes and encode the whole groups that follow. The aligned
		// case also covers `echo $V | base64` (the newline only changes the
		// last, partial group).
		for skip := 0; skip < 3 && skip < len(v); skip++ {
			rest := v[skip:]
			rest = rest[:len(rest)/3*3]
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				if f := enc.EncodeToString([]byte(rest)); len(f) >= minEncoded {
					add(f)
				}
			}
		}
	}
	if len(forms) == 0 {
		return nil
	}
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	r := &Redactor{forms: forms, max: len(forms[0])}
	for _, f := range forms {
		r.first[f[0]] = true
	}
	return r
}

// Empty reports whether r redacts nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.forms) == 0 }

// match returns the length of the longest form at p[0:], or 0.
func (r *Redactor) match(p []byte) int {
	if !r.first[p[0]] {
		return 0
	}
	for _, f := range r.forms {
		if bytes.HasPrefix(p, f) {
			return len(f)
		}
	}
	return 0
}

// partial reports whether p (shorter than some form) is the start of one.
func (r *Redactor) partial(p []byte) bool {
	if !r.first[p[0]] {
		return false
	}
	for _, f := range r.forms {
		if len(p) < len(f) && bytes.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// rewrite appends p to out with every form replaced. Its first done bytes
// were written out already (a released carry-over): a form that starts
// among them and ends past them is still replaced, from where they end.
// With hold, it stops at the first position where the rest of p may be
// the start of a form; it returns how many bytes of p it consumed and how
// many of the rest were written out already.
func (r *Redactor) rewrite(out, p []byte, done int, hold bool) ([]byte, int, int) {
	i, last := 0, done
	for i < len(p) {
		if n := r.match(p[i:]); n > 0 && i+n > done {
			if i > last {
				out = append(out, p[last:i]...)
			}
			out = append(out, Mark...)
			i += n
			last = i
			continue
		}
		if hold && len(p)-i < r.max && r.partial(p[i:]) {
			if i > last {
				out = append(out, p[last:i]...)
			}
			return out, i, max(0, last-i)
		}
		i++
	}
	if last < len(p) {
		out = append(out, p[last:]...)
	}
	return out, len(p), 0
}

// Bytes returns p with every form replaced (p itself when nothing matched
// or r is empty).
func (r *Redactor) Bytes(p []byte) []byte {
	if r.Empty() || len(p) == 0 {
		return p
	}
	out, _, _ := r.rewrite(make([]byte, 0, len(p)), p, 0, false)
	if bytes.Equal(out, p) {
		return p
	}
	return out
}

// String returns s with every form replaced.
func (r *Redactor) String(s string) string {
	if r.Empty() || s == "" {
		return s
	}
	return string(r.Bytes([]byte(s)))
}

// Strings redacts each element of ss in place and returns ss.
func (r *Redactor) Strings(ss []string) []string {
	for i, s := range ss {
		ss[i] = r.String(s)
	}
	return ss
}
