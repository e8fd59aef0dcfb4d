package mcpserver

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

// Every kind of log entry fits workspace_logs' output schema, though only
// exec entries carry the command's fields.
func TestLogsOutputSchema(t *testing.T) {
	res, err := logsOutputSchema().Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, le := range []api.LogEntry{
		{Kind: api.LogExec, Sequence: 1, Command: []string{"true"}, Cwd: "/workspace", StartedAt: now},
		{Sequence: 2, Command: []string{"true"}, StartedAt: now}, // as pyro 2.4 wrote it
		{Kind: api.LogSnapshot, Sequence: 3, Snapshot: "s1", StartedAt: now},
		{Kind: api.LogReset, Sequence: 4, Snapshot: "s1", SnapshotSequence: 3, StartedAt: now},
		{Kind: api.LogFork, Sequence: 5, ForkWorkspaceID: "0123456789abcdef", StartedAt: now},
		{Kind: api.LogShellOpen, Sequence: 6, ShellID: "sh-1", Cwd: "/workspace", StartedAt: now},
		{Kind: api.LogShellClose, Sequence: 7, ShellID: "sh-1", StartedAt: now},
		{Kind: api.LogServiceStart, Sequence: 8, Service: "web", Command: []string{"python3", "-m", "http.server"}, StartedAt: now},
		{Kind: api.LogServiceStop, Sequence: 9, Service: "web", ExitCode: 143, StartedAt: now},
	} {
		data, err := json.Marshal(api.WorkspaceLogs{WorkspaceID: "0123456789abcdef", Entries: []api.LogEntry{le}, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		if err := res.Validate(v); err != nil {
			t.Errorf("%s entry %s: %v", le.Kind, data, err)
		}
	}
}
