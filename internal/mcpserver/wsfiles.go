package mcpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// The two reads the resources make of a workspace: the engine's file
// reads (the same as workspace_file_list and workspace_file_read), without
// booting a stopped workspace and without logging.

// wsFile is one regular file under /workspace.
type wsFile struct {
	Path string // relative to /workspace
	Size int64
}

// fileRead is the start of one file.
type fileRead struct {
	Data []byte // at most the max asked for
	Size int64  // the whole file's
}

// errNotAFile says the path is not a regular file (a directory, say).
var errNotAFile = errors.New("not a regular file")

// readWorkspaceFile reads at most max bytes of rel, a path under
// /workspace of the running workspace id.
func readWorkspaceFile(ctx context.Context, s *Server, id, rel string, max int) (*fileRead, error) {
	r, err := s.eng.PeekWorkspaceFile(ctx, id, rel, max)
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		// A directory, say: the caller lists it instead, and that listing
		// says what is wrong with anything else (a link out, a FIFO).
		return nil, errNotAFile
	}
	if err != nil {
		return nil, err
	}
	data := []byte(r.Content)
	if r.Encoding == api.EncodingBase64 {
		if data, err = base64.StdEncoding.DecodeString(r.Content); err != nil {
			return nil, err
		}
	}
	return &fileRead{Data: data, Size: r.Size}, nil
}

// listWorkspaceFiles lists the regular files under dir ("" for
// /workspace itself) of the running workspace id, skipping .git, at most
// maxListedFiles of them; more says some were left out.
func listWorkspaceFiles(ctx context.Context, s *Server, id, dir string) (files []wsFile, more bool, err error) {
	l, err := s.eng.PeekWorkspaceFiles(ctx, id, dir, maxListedFiles)
	if err != nil {
		return nil, false, err
	}
	for _, e := range l.Entries {
		files = append(files, wsFile{Path: strings.TrimPrefix(e.Path, api.WorkspaceRoot+"/"), Size: e.Size})
	}
	return files, l.Truncated, nil
}
