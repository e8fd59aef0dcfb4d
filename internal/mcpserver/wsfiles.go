package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// The two reads the resources make of a workspace. For now each is one
// short command run in the running guest without being logged
// (engine.PeekWorkspace); when the engine reads workspace files itself
// (workspace_file_list, workspace_file_read), these two functions call
// that instead and nothing else changes.

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

// errNotAFile says the path is a directory.
var errNotAFile = errors.New("not a regular file")

// Both scripts resolve the path in the guest and refuse one that leads
// out of /workspace (through a symlink, say). Exit codes: 3 no such path,
// 4 outside /workspace, 5 a directory, 6 neither a file nor a directory.
const confine = `root=$(pwd -P) || exit 9
p=$(realpath -e -- "$PYRO_PATH" 2>/dev/null) || exit 3
case "$p" in "$root"|"$root"/*) ;; *) exit 4 ;; esac
`

const readScript = confine + `[ -d "$p" ] && exit 5
[ -f "$p" ] || exit 6
stat -c %s -- "$p" && head -c "$PYRO_MAX" -- "$p" | base64 -w0`

const listScript = confine + `[ -d "$p" ] || exit 6
cd "$p" && find . -xdev -name .git -prune -o -type f -printf '%s %P\0' | head -z -n "$PYRO_MAX"`

// readWorkspaceFile reads at most max bytes of rel, a path under
// /workspace of the running workspace id.
func readWorkspaceFile(ctx context.Context, s *Server, id, rel string, max int) (*fileRead, error) {
	out, err := peek(ctx, s, id, rel, readScript, max)
	if err != nil {
		return nil, err
	}
	sizeText, b64, _ := strings.Cut(string(out), "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("reading %s: unexpected answer from the guest", rel)
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	return &fileRead{Data: data, Size: size}, nil
}

// listWorkspaceFiles lists the regular files under dir ("" for
// /workspace itself) of the running workspace id, skipping .git, at most
// maxListedFiles of them; more says some were left out.
func listWorkspaceFiles(ctx context.Context, s *Server, id, dir string) (files []wsFile, more bool, err error) {
	out, err := peek(ctx, s, id, dir, listScript, maxListedFiles+1)
	if err != nil {
		return nil, false, err
	}
	for _, rec := range bytes.Split(out, []byte{0}) {
		sizeText, name, ok := strings.Cut(string(rec), " ")
		size, err := strconv.ParseInt(sizeText, 10, 64)
		if !ok || err != nil || name == "" || strings.Contains(name, "\n") {
			continue
		}
		if len(files) == maxListedFiles {
			more = true
			break
		}
		files = append(files, wsFile{Path: path.Join(dir, name), Size: size})
	}
	return files, more, nil
}

// peek runs one of the scripts above on rel and turns its exit code into
// an error.
func peek(ctx context.Context, s *Server, id, rel, script string, max int) ([]byte, error) {
	if rel == "" {
		rel = "."
	}
	res, err := s.eng.PeekWorkspace(ctx, id, api.ExecOptions{Command: script, TimeoutSeconds: 20,
		Env: map[string]string{"PYRO_PATH": rel, "PYRO_MAX": strconv.Itoa(max)}})
	if err != nil {
		return nil, err
	}
	where := path.Join(api.WorkspaceRoot, rel)
	switch res.ExitCode {
	case 0:
		return []byte(res.Stdout), nil
	case 3:
		return nil, errdefs.New(errdefs.ErrNotFound, "", "no %s in workspace %s", where, id)
	case 4:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "resources show only what is under /workspace", "%s leads out of /workspace", where)
	case 5:
		return nil, errNotAFile
	case 6:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s is not a regular file or directory", where)
	}
	return nil, fmt.Errorf("reading %s: exit status %d: %s", where, res.ExitCode, strings.TrimSpace(res.Stderr))
}
