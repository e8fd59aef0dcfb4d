package engine

import (
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
)

// withOrigin records where a seed came from. Without an explicit origin
// the seed path is it; with one (a temporary export of a project or of a
// clone, made by the MCP face) the export is an implementation detail: the
// record names the project's directory or the repository instead.
func withOrigin(seed api.WorkspaceSeed, o *api.SeedOrigin) api.WorkspaceSeed {
	if o == nil {
		seed.OriginKind, seed.OriginRef = api.OriginPath, seed.SourcePath
		if seed.Mode == archive.ModeTarArchive {
			seed.OriginKind = api.OriginArchive
		}
		return seed
	}
	seed.Mode, seed.SourcePath = archive.ModeDirectory, ""
	if o.Kind == api.OriginProject {
		seed.SourcePath = o.Ref
	}
	seed.OriginKind, seed.OriginRef = o.Kind, o.Ref
	return seed
}
