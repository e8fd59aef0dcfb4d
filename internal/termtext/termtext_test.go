package termtext

import "testing"

func TestPlain(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"text", "hello\n", "hello\n"},
		{"crlf", "a\r\nb\r\n", "a\nb\n"},
		{"colours", "\x1b[0m\x1b[01;34mdir\x1b[0m  file\x1b[K\n", "dir  file\n"},
		{"progress redrawn", "10%\r50%\r100%\n", "100%\n"},
		{"shorter redraw keeps the rest", "abcdef\rxy\n", "xycdef\n"},
		{"erase to end of line", "abcdef\rxy\x1b[K\n", "xy\n"},
		{"backspace", "abd\bc\n", "abc\n"},
		{"osc title", "\x1b]0;user@host: ~\x07$ ", "$ "},
		{"osc with st", "\x1b]2;t\x1b\\ok", "ok"},
		{"bracketed paste", "\x1b[?2004h>>> 1+1\r\n2\r\n", ">>> 1+1\n2\n"},
		{"bell and charset", "a\x07\x1b(Bb", "ab"},
		{"utf8", "héllo ✓\n", "héllo ✓\n"},
		{"tab", "a\tb", "a\tb"},
	} {
		if got := Plain([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: Plain(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestIncomplete(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"abc", 0},
		{"abc\x1b", 1},
		{"abc\x1b[", 2},
		{"abc\x1b[01;3", 6},
		{"abc\x1b[01;34m", 0},
		{"abc\x1b]0;title", 9},
		{"abc\x1b]0;title\x07", 0},
		{"abc\x1b(", 2},
		{"h\xc3", 1},
		{"h\xe2\x9c", 2},
		{"h\xe2\x9c\x93", 0},
		{"h\xf0\x9f\x98", 3},
		{"\x1b[0mdone", 0},
	} {
		if got := Incomplete([]byte(tc.in)); got != tc.want {
			t.Errorf("Incomplete(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
