package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
)

// Off a terminal: one line per phase and step, and of a counted step its
// first and last count only.
func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	v := (&App{Stderr: &b}).newProgressView()
	if v.live {
		t.Fatal("a buffer is not a terminal")
	}
	for _, p := range []api.Progress{
		{Op: "pull", Phase: "resolve", Environment: "debian:12"},
		{Op: "pull", Phase: "download", Environment: "debian:12", Step: "rootfs", Unit: api.UnitBytes, Done: 1, Total: 3},
		{Op: "pull", Phase: "download", Environment: "debian:12", Step: "rootfs", Unit: api.UnitBytes, Done: 2, Total: 3},
		{Op: "pull", Phase: "download", Environment: "debian:12", Step: "rootfs", Unit: api.UnitBytes, Done: 3, Total: 3},
		{Op: "workspace create", Phase: "boot", ID: "ab"},
		{Op: "workspace create", Phase: "boot", ID: "ab"},
		{Op: "workspace create", Phase: "boot", Step: "guest", ID: "ab"},
		{Op: "workspace create", Phase: "done", ID: "ab"},
	} {
		v.show(p)
	}
	v.finish()
	want := []string{
		"[pull] phase=resolve environment=debian:12",
		"[pull] phase=download environment=debian:12 step=rootfs bytes=1 total=3",
		"[pull] phase=download environment=debian:12 step=rootfs bytes=3 total=3",
		"[workspace create] phase=boot id=ab",
		"[workspace create] phase=boot id=ab step=guest",
		"[workspace create] phase=done id=ab",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(b.String()), "\n")); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestCommandOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want pyro.ExecOptions
	}{
		{[]string{"git", "--version"}, pyro.ExecOptions{Argv: []string{"git", "--version"}}},
		{[]string{"true"}, pyro.ExecOptions{Argv: []string{"true"}}},
		{[]string{"make && make test"}, pyro.ExecOptions{Command: "make && make test"}},
		{[]string{"echo $HOME"}, pyro.ExecOptions{Command: "echo $HOME"}},
	} {
		if diff := cmp.Diff(tc.want, commandOptions(tc.args)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.args, diff)
		}
	}
}
