package qemu

import "testing"

func TestTopFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/s/layers/a.qcow2", "/s/layers/a.qcow2"},
		{`json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/s/layers/old.qcow2"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "/s/layers/new.qcow2"}}`, "/s/layers/new.qcow2"},
		{"json:{bad", "json:{bad"},
	} {
		if got := topFile(tc.in); got != tc.want {
			t.Errorf("topFile(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
