package mcpserver

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
)

// createWorkspace seeds a workspace_create that names no seed_path from
// the server's project, if it has one: the project's export goes through
// the engine's ordinary seeding (and its checks) and is removed afterwards.
func (s *Server) createWorkspace(ctx context.Context, o api.CreateWorkspaceOptions) (*api.Workspace, error) {
	if o.SeedPath != "" || s.project == nil {
		return s.eng.CreateWorkspace(ctx, o)
	}
	x, err := s.project.Export(ctx)
	if err != nil {
		return nil, err
	}
	defer x.Remove()
	o.SeedPath, o.SeedOrigin = x.Path, &x.Origin
	return s.eng.CreateWorkspace(ctx, o)
}

// projectNote tells workspace_create's caller what an absent seed_path means.
func (s *Server) projectNote() string {
	if s.project == nil {
		return ""
	}
	return "; without seed_path, /workspace is seeded from " + s.project.String()
}
