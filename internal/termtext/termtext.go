// Package termtext turns what a program wrote to a terminal into plain
// text: ANSI and other control sequences are dropped, and carriage
// returns, backspaces and erase-to-end-of-line are applied to the line
// they act on, so that a progress bar redrawn in place reads as its last
// state. It also finds where a chunk of terminal output ends in the middle
// of a sequence or a UTF-8 character, so that a reader can stop before it.
package termtext

import (
	"strings"
	"unicode/utf8"
)

// maxHeldSequence bounds what Incomplete holds back as the start of an
// escape sequence: past it, the bytes are garbage, not a sequence.
const maxHeldSequence = 256

// Plain renders terminal output b as plain text.
func Plain(b []byte) string {
	var out strings.Builder
	out.Grow(len(b))
	var line []rune
	col := 0
	put := func(r rune) {
		if col < len(line) {
			line[col] = r
		} else {
			for len(line) < col {
				line = append(line, ' ')
			}
			line = append(line, r)
		}
		col++
	}
	endLine := func(nl bool) {
		out.WriteString(string(line))
		if nl {
			out.WriteByte('\n')
		}
		line, col = line[:0], 0
	}
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == 0x1b:
			n, final, params := sequence(b[i:])
			if final == 'K' && (params == "" || params == "0") && col < len(line) {
				line = line[:col] // erase to the end of the line
			}
			i += n
			continue
		case c == '\n':
			endLine(true)
		case c == '\r':
			col = 0
		case c == '\b':
			if col > 0 {
				col--
			}
		case c == '\t':
			put('\t')
		case c < 0x20 || c == 0x7f:
			// other control characters: bell, shift in/out, DEL ...
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r >= 0x80 && r < 0xa0 {
				i += size // C1 controls
				continue
			}
			put(r)
			i += size
			continue
		}
		i++
	}
	endLine(false)
	return out.String()
}

// sequence measures the escape sequence at the start of b (b[0] is ESC):
// its length, its final byte for a CSI (else 0) and its parameters. An
// unterminated sequence runs to the end of b.
func sequence(b []byte) (n int, final byte, params string) {
	if len(b) < 2 {
		return len(b), 0, ""
	}
	switch b[1] {
	case '[': // CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, final 0x40-0x7E
		i := 2
		for i < len(b) && b[i] >= 0x30 && b[i] <= 0x3f {
			i++
		}
		p := string(b[2:i])
		for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f {
			i++
		}
		if i < len(b) && b[i] >= 0x40 && b[i] <= 0x7e {
			return i + 1, b[i], p
		}
		return i, 0, p
	case ']', 'P', '^', '_', 'X': // OSC, DCS, PM, APC, SOS: up to BEL or ST (ESC \)
		for i := 2; i < len(b); i++ {
			if b[i] == 0x07 {
				return i + 1, 0, ""
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2, 0, ""
			}
		}
		return len(b), 0, ""
	case '(', ')', '*', '+', '#', '%': // charset designations take one more byte
		return min(3, len(b)), 0, ""
	}
	return 2, 0, ""
}

// Incomplete returns how many bytes at the end of b are the start of an
// escape sequence or of a UTF-8 character that the rest of the stream has
// yet to complete: a reader that stops before them reads them whole next
// time.
func Incomplete(b []byte) int {
	if n := incompleteSequence(b); n > 0 {
		return n
	}
	return incompleteRune(b)
}

func incompleteSequence(b []byte) int {
	from := max(0, len(b)-maxHeldSequence)
	esc := -1
	for i := len(b) - 1; i >= from; i-- {
		if b[i] == 0x1b {
			esc = i
			break
		}
	}
	if esc < 0 {
		return 0
	}
	tail := b[esc:]
	if len(tail) == 1 {
		return 1
	}
	switch tail[1] {
	case '[':
		n, final, _ := sequence(tail)
		if final == 0 && n == len(tail) {
			return len(tail)
		}
	case ']', 'P', '^', '_', 'X':
		if n, _, _ := sequence(tail); n == len(tail) && tail[len(tail)-1] != 0x07 && !strings.HasSuffix(string(tail), "\x1b\\") {
			return len(tail)
		}
	case '(', ')', '*', '+', '#', '%':
		if len(tail) < 3 {
			return len(tail)
		}
	}
	return 0
}

func incompleteRune(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // a lead byte: how long is its character?
			need := 2
			switch {
			case c >= 0xf0:
				need = 4
			case c >= 0xe0:
				need = 3
			}
			if need > k {
				return k
			}
			return 0
		}
	}
	return 0
}
