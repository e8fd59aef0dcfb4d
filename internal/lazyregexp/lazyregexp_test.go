package lazyregexp

import "testing"

func TestRegexp(t *testing.T) {
	r := New(`^(\d+) upgraded, ([a-z]{0,3})$`)
	tests := []struct {
		in    string
		match bool
	}{
		{"2 upgraded, abc", true},
		{"2 upgraded, abcd", false},
		{"x", false},
	}
	for _, tt := range tests {
		if got := r.MatchString(tt.in); got != tt.match {
			t.Errorf("MatchString(%q) = %v", tt.in, got)
		}
	}
	if m := r.FindStringSubmatch("7 upgraded, ab"); len(m) != 3 || m[1] != "7" || m[2] != "ab" {
		t.Errorf("FindStringSubmatch: %q", m)
	}
	if got := New(`b+`).FindString("abbc"); got != "bb" {
		t.Errorf("FindString: %q", got)
	}
	if r.String() != `^(\d+) upgraded, ([a-z]{0,3})$` {
		t.Errorf("String: %q", r.String())
	}
}
