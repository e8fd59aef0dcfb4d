package engine

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
)

// SummarizeWorkspace is a review card of what happened in a workspace
// since it was created or last reset: the commands with their exit codes,
// the file writes, patches and syncs, the exports, and what changed in
// /workspace since its baseline (a diff's stat: names and line counts,
// no contents). The stat needs the guest: a stopped workspace is booted.
func (e *Engine) SummarizeWorkspace(ctx context.Context, ref string) (*api.WorkspaceSummary, error) {
	defer e.enter()()
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	logs, err := e.LogsWorkspace(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	s := &api.WorkspaceSummary{WorkspaceID: rec.ID, Since: api.SummaryStart{Event: "create", At: rec.CreatedAt},
		Commands: []api.CommandSummary{}, Exports: []api.SummaryExport{}}
	for _, en := range logs.Entries {
		if en.Kind == api.LogReset && en.Sequence > s.Since.Sequence {
			s.Since = api.SummaryStart{Event: "reset", Sequence: en.Sequence, At: en.StartedAt, Snapshot: en.Snapshot}
		}
	}
	for _, en := range logs.Entries {
		if en.Sequence <= s.Since.Sequence || en.ResetBy != 0 {
			continue
		}
		ok := en.Error == ""
		switch en.Kind {
		case api.LogExec:
			s.Commands = append(s.Commands, api.CommandSummary{Sequence: en.Sequence, Command: en.Command, ExitCode: en.ExitCode,
				TimedOut: en.TimedOut, StartedAt: en.StartedAt, DurationMs: en.DurationMs})
			if !ok || en.ExitCode != 0 || en.TimedOut {
				s.FailedCommands++
			}
		case api.LogFileWrite:
			if ok {
				s.FileWrites++
			}
		case api.LogPatch:
			if ok {
				s.Patches++
			}
		case api.LogSync:
			if ok {
				s.Syncs++
			}
		case api.LogExport:
			if ok && en.FileEvent != nil {
				s.Exports = append(s.Exports, api.SummaryExport{Sequence: en.Sequence, Path: en.Path, OutputPath: en.OutputPath,
					Entries: en.Entries, Bytes: en.Bytes, At: en.StartedAt})
			}
		}
	}
	s.CommandCount = len(s.Commands)
	s.Changes = api.SummaryChanges{Files: []api.DiffEntry{}}
	if err := hasBaseline(rec); err != nil {
		s.Changes.Note = err.Error()
		return s, nil
	}
	d, err := e.DiffWorkspace(ctx, rec.ID, api.DiffOptions{Stat: true})
	if err != nil {
		return nil, err
	}
	s.Changes = api.SummaryChanges{Available: true, Files: d.Entries, Count: d.Count, Insertions: d.Insertions, Deletions: d.Deletions}
	return s, nil
}
