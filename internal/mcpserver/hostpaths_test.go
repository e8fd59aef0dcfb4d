package mcpserver

import "testing"

func TestUnder(t *testing.T) {
	roots := []root{{dir: "/home/u/proj"}, {dir: "/srv/data"}}
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"/home/u/proj", true},
		{"/home/u/proj/src/a.go", true},
		{"/home/u/project", false}, // a prefix of the name is not a parent
		{"/home/u/proj-secrets/x", false},
		{"/home/u", false},
		{"/srv/data/x.tar", true},
		{"/", false},
	} {
		if _, ok := under(tc.p, roots); ok != tc.ok {
			t.Errorf("under(%q) = %v, want %v", tc.p, ok, tc.ok)
		}
	}
	if _, ok := under("/etc/shadow", []root{{dir: "/"}}); !ok {
		t.Error("root / allows nothing")
	}
}
