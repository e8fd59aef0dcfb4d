package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// A record's counts take in the history appended after HistoryFolded:
// whole entries only, damaged ones passed over, a record of an earlier
// release (no HistoryFolded) counting its whole history already.
func TestFoldHistory(t *testing.T) {
	at := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	line := func(le api.LogEntry) string {
		b, err := encodeEntry(le)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cmd := func(seq, exit int) string {
		return line(api.LogEntry{Kind: api.LogExec, Sequence: seq, Command: []string{"c", fmt.Sprint(seq)}, ExitCode: exit, StartedAt: at, DurationMs: int64(seq)})
	}
	snap := line(api.LogEntry{Kind: api.LogSnapshot, Sequence: 4, Snapshot: "s", StartedAt: at.Add(time.Hour)})
	file := line(api.LogEntry{Kind: api.LogPatch, Sequence: 5, StartedAt: at.Add(time.Minute), DurationMs: 7, FileEvent: &api.FileEvent{Files: []api.PatchFile{{Path: "a"}}}})
	v24 := `{"sequence":6,"command":["old"],"cwd":"/workspace","exit_code":3,"stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"timed_out":false,"started_at":"2026-12-01T07:00:00Z","duration_ms":1}` + "\n"
	n := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		history string
		folded  *int64 // nil: a record of an earlier release
		next    int
		count   int
		lastSeq int
		active  time.Time // zero: none
		foldsTo int64     // -1: the history's size
	}{
		{"no history, new record", "", n(0), 1, 0, 0, time.Time{}, 0},
		{"no history file, earlier release", "-", nil, 1, 0, 0, time.Time{}, 0},
		{"earlier release counts its whole history", cmd(1, 0) + cmd(2, 0), nil, 1, 0, 0, time.Time{}, -1},
		{"commands", cmd(1, 0) + cmd(3, 1) + cmd(2, 0), n(0), 4, 3, 3, at.Add(3 * time.Millisecond), -1},
		{"only after the folded part", cmd(1, 0) + cmd(2, 0), n(int64(len(cmd(1, 0)))), 3, 1, 2, at.Add(2 * time.Millisecond), -1},
		{"events: sequences; a file operation is activity", snap + file, n(0), 6, 0, 0, at.Add(time.Minute + 7*time.Millisecond), -1},
		{"a 2.4 entry is a command", v24, n(0), 7, 1, 6, at.Add(time.Millisecond), -1},
		{"a damaged line is passed over", "{oops\n" + cmd(1, 0), n(0), 2, 1, 1, at.Add(time.Millisecond), -1},
		{"a torn last line waits", cmd(1, 0) + `{"kind":"exec","seq`, n(0), 2, 1, 1, at.Add(time.Millisecond), int64(len(cmd(1, 0)))},
		{"a history cut short by hand", cmd(1, 0), n(1 << 20), 1, 0, 0, time.Time{}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), LogFile)
			if tt.history != "-" {
				if err := os.WriteFile(path, []byte(tt.history), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ws := &wsState{NextSequence: 1, HistoryFolded: tt.folded}
			ws.foldHistory(path)
			want := tt.foldsTo
			if want < 0 {
				want = int64(len(tt.history))
			}
			if ws.HistoryFolded == nil || *ws.HistoryFolded != want {
				t.Errorf("folded to %v, want %d", ws.HistoryFolded, want)
			}
			if ws.NextSequence != tt.next || ws.CommandCount != tt.count {
				t.Errorf("next %d count %d, want %d %d", ws.NextSequence, ws.CommandCount, tt.next, tt.count)
			}
			if got := ws.LastCommand; (got == nil) != (tt.lastSeq == 0) || got != nil && got.Sequence != tt.lastSeq {
				t.Errorf("last command %+v, want sequence %d", got, tt.lastSeq)
			}
			if got := ws.LastActivityAt; (got == nil) != tt.active.IsZero() || got != nil && !got.Equal(tt.active) {
				t.Errorf("activity %v, want %v", got, tt.active)
			}
			// Taking it in again changes nothing.
			before := *ws
			ws.foldHistory(path)
			if ws.CommandCount != before.CommandCount || ws.NextSequence != before.NextSequence || *ws.HistoryFolded != *before.HistoryFolded {
				t.Errorf("a second fold changed the counts: %+v", ws)
			}
		})
	}
}
