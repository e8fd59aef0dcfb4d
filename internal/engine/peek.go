package engine

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// PeekWorkspace runs a short command in a running workspace without
// logging it and without booting a stopped one: for read-only views of a
// workspace (the MCP server's resources) that must not show up in its
// command history. Commands that change /workspace belong in ExecWorkspace.
func (e *Engine) PeekWorkspace(ctx context.Context, ref string, o api.ExecOptions) (*api.ExecResult, error) {
	defer e.enter()()
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	if o.Cwd == "" {
		o.Cwd = api.WorkspaceRoot
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if !e.alive(rec) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "run a command in it first (its next exec boots it again from its disk)",
			"workspace %s is not running", rec.ID)
	}
	return e.exec(ctx, rec, o)
}
