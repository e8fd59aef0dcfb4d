package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// A command that floods its output and has a huge command line still
// stores a bounded entry, with every cut flagged.
func TestLogEntryBounded(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("\x01", 100<<10) // each byte is six in JSON
	r, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{
		Command: "head -c 3000000 /dev/zero | tr '\\0' '\\1'; head -c 3000000 /dev/zero >&2; : '" + long + "'"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.StdoutTruncated || !r.StderrTruncated {
		t.Errorf("result not truncated: %d %d bytes", len(r.Stdout), len(r.Stderr))
	}
	b, err := os.ReadFile(filepath.Join(e.wss.Path(ws.WorkspaceID), LogFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxLogEntry {
		t.Errorf("stored entry is %d bytes, bound %d", len(b), MaxLogEntry)
	}
	t.Logf("stored entry: %d bytes (bound %d)", len(b), MaxLogEntry)
	logs, err := e.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil || logs.Count != 1 {
		t.Fatalf("logs %v %v", logs, err)
	}
	le := logs.Entries[0]
	if len(le.Stdout) != MaxLoggedOutput || !le.StdoutTruncated || len(le.Stderr) != MaxLoggedOutput || !le.StderrTruncated {
		t.Errorf("outputs %d/%v %d/%v", len(le.Stdout), le.StdoutTruncated, len(le.Stderr), le.StderrTruncated)
	}
	if n := len(strings.Join(le.Command, "")); n > MaxLoggedCommand || !le.CommandTruncated {
		t.Errorf("command %d bytes, truncated %v", n, le.CommandTruncated)
	}
	st, _ := e.StatusWorkspace(ctx, ws.WorkspaceID)
	if n := len(strings.Join(st.LastCommand.Command, "")); n > MaxLoggedCommand {
		t.Errorf("the record's last command is %d bytes", n)
	}
}

// A damaged history is an error that names the file and the line, never a
// listing that silently stops; a torn last line is an append in progress.
func TestLogsDamaged(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: fmt.Sprintf("echo %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(e.wss.Path(ws.WorkspaceID), LogFile)
	good, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(good, []byte("\n"))

	for _, tc := range []struct {
		name    string
		content []byte
		line    int // 0: no error
		count   int
	}{
		{"intact", good, 0, 3},
		{"garbage in the middle", join(lines[0], []byte("{not json\n"), lines[1], lines[2]), 2, 0},
		{"line over the bound", join(lines[0], bytes.Repeat([]byte("x"), MaxLogEntry+10), []byte("\n"), lines[1]), 2, 0},
		// The old scanner stopped at a line over its buffer and returned
		// what came before it: the whole history is read, or nothing.
		{"long line last", join(lines[0], lines[1], bytes.Repeat([]byte("y"), 5<<20)), 3, 0},
		{"torn last line", join(lines[0], lines[1], lines[2][:20]), 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(path, tc.content, 0o600)
			logs, err := e.LogsWorkspace(ctx, ws.WorkspaceID)
			if tc.line == 0 {
				if err != nil || logs.Count != tc.count {
					t.Fatalf("logs %v, %v; want %d entries", logs, err, tc.count)
				}
				return
			}
			want := fmt.Sprintf("%s:%d: damaged log entry", path, tc.line)
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), want) || errdefs.HintOf(err) == "" {
				t.Fatalf("error %v (hint %q), want %q", err, errdefs.HintOf(err), want)
			}
		})
	}

	// The next command cuts a torn tail off before it appends.
	os.WriteFile(path, join(lines[0], lines[1], lines[2][:20]), 0o600)
	if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: "echo after"}); err != nil {
		t.Fatal(err)
	}
	logs, err := e.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil || logs.Count != 3 || logs.Entries[2].Stdout != "after\n" {
		t.Fatalf("after a torn tail: %+v %v", logs, err)
	}
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
