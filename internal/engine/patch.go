package engine

import (
	"context"
	"io"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// ApplyWorkspacePatch applies a unified diff (git's format, or diff -u's)
// under /workspace, all or nothing: the guest agent checks every file's
// hunks before it writes anything, then renames each result into place.
// It runs in the guest, where the files are: only the patch crosses.
func (e *Engine) ApplyWorkspacePatch(ctx context.Context, ref string, patch io.Reader) (*api.PatchResult, error) {
	defer e.enter()()
	if patch == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give the patch text", "no patch")
	}
	op, err := e.beginFileOp(ref)
	if err != nil {
		return nil, err
	}
	defer op.end()
	var files []api.PatchFile
	// The host bounds what it sends too; the guest refuses past it.
	limited := io.LimitReader(patch, api.MaxPatchBytes+1)
	rec, err := e.onGuest(ctx, op.id, false, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		src := &abortReader{r: &touchReader{r: limited, touch: touch}}
		ctx, src.cancel = context.WithCancel(ctx)
		defer src.cancel()
		r, err := c.ApplyPatch(ctx, agentproto.PatchRequest{MaxBytes: api.MaxPatchBytes}, src)
		if src.err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, src.err, "nothing was changed", "reading the patch")
		}
		if err != nil {
			return err
		}
		files = r.Files
		return nil
	})
	ev := &api.FileEvent{Files: files, Entries: len(files)}
	if err := op.log(api.LogPatch, ev, err); err != nil {
		return nil, err
	}
	res := &api.PatchResult{WorkspaceID: rec.ID, Files: files, Count: len(files)}
	for _, f := range files {
		res.Insertions += f.Insertions
		res.Deletions += f.Deletions
	}
	return res, nil
}
