package engine

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// DiffWorkspace compares /workspace (or o.Paths under it) with the
// baseline snapshot, which the guest has mounted read-only: git's
// unified diff for text, a summary line for binary files, mode and type
// changes. The walk and the comparison run in the guest.
func (e *Engine) DiffWorkspace(ctx context.Context, ref string, o api.DiffOptions) (*api.Diff, error) {
	defer e.enter()()
	paths := make([]string, 0, len(o.Paths))
	for _, p := range o.Paths {
		g, err := agent.CleanWorkspacePath(p)
		if err != nil {
			return nil, err
		}
		paths = append(paths, g)
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if err := hasBaseline(rec); err != nil {
		return nil, err
	}
	out := &api.Diff{Baseline: api.BaselineSnapshot, Paths: paths, Entries: []api.DiffEntry{}}
	req := agentproto.DiffRequest{Paths: paths, NoPatch: o.Stat || o.NameOnly, NameOnly: o.NameOnly}
	rec, err = e.onGuest(ctx, rec.ID, false, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		out.Entries, out.Insertions, out.Deletions = out.Entries[:0], 0, 0
		_, err := c.Diff(ctx, req, func(en api.DiffEntry) error {
			touch()
			out.Entries = append(out.Entries, en)
			out.Insertions += en.Insertions
			out.Deletions += en.Deletions
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	out.WorkspaceID, out.Count = rec.ID, len(out.Entries)
	return out, nil
}

// hasBaseline refuses a diff of a workspace without a baseline in its
// guest: one made by pyro 2.4 (and its forks), one on the host, one on
// Firecracker.
func hasBaseline(rec *vmRecord) error {
	if err := diskSupport(rec, "diff"); err != nil {
		return err
	}
	if layoutOf(rec) != api.LayoutData || rec.Workspace.baseline() == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition,
			"to review its changes, export /workspace (workspace export) and compare it yourself, or start over from it in a new workspace (workspace create with its export as the seed)",
			"workspace %s has no baseline to diff against: it was made by pyro 2.4 (or forked from one), before workspaces kept the state they were created in", rec.ID)
	}
	return nil
}
