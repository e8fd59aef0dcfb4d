package engine

import (
	"fmt"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/api"
)

// Concurrent execs each take their own number, and the record's counts,
// never rewritten after a command, take every entry in when read.
func TestExecCountsFromHistory(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.WorkspaceID
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.ExecWorkspace(ctx, id, api.ExecOptions{Argv: []string{"echo", fmt.Sprint(i)}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	logs, err := e.LogsWorkspace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for i, le := range logs.Entries {
		if le.Sequence != i+1 {
			t.Errorf("entry %d has sequence %d", i, le.Sequence)
		}
	}
	st, err := e.StatusWorkspace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.CommandCount != n || st.LastCommand == nil || st.LastCommand.Sequence != n || logs.Count != n {
		t.Fatalf("count %d, last %+v, %d entries; want %d", st.CommandCount, st.LastCommand, logs.Count, n)
	}

	// A crash of the host can bring back an older record (its writes
	// are not synced): the history, which is, is taken in again.
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	rec.Workspace.NextSequence, rec.Workspace.CommandCount, rec.Workspace.LastCommand, rec.Workspace.HistoryFolded = 1, 0, nil, &zero
	if err := e.wss.Write(id, &rec); err != nil {
		t.Fatal(err)
	}
	r, err := e.ExecWorkspace(ctx, id, api.ExecOptions{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sequence != n+1 {
		t.Errorf("after an older record, the next command is %d, want %d", r.Sequence, n+1)
	}
	if st, _ := e.StatusWorkspace(ctx, id); st.CommandCount != n+1 || st.LastCommand.Sequence != n+1 {
		t.Errorf("count %d, last %+v; want %d", st.CommandCount, st.LastCommand, n+1)
	}
}
