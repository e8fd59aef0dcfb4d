package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"path"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hints"
)

// Workspaces as MCP resources: each workspace is a resource listing its
// files (pyro://workspace/ID/), each file of a running workspace is listed
// too (up to maxListedFiles per workspace), and the template reads any
// file. resources/list_changed goes out when workspaces come and go.
const (
	resourcePrefix   = "pyro://workspace/"
	resourceTemplate = resourcePrefix + "{workspace_id}/{+path}"
	// MaxResourceBytes caps one resources/read of a file; the rest is
	// cut off and the contents' _meta says so.
	MaxResourceBytes = 256 << 10
	// maxListedFiles caps the files one workspace adds to resources/list
	// and to a directory listing.
	maxListedFiles = 200
)

// resources keeps the server's resources in step with the workspaces.
type resources struct {
	s      *Server
	mu     sync.Mutex
	listed map[string]bool // workspace ids that have a root resource
}

func newResources(s *Server) *resources {
	r := &resources{s: s, listed: map[string]bool{}}
	s.mcp.AddResourceTemplate(&mcp.ResourceTemplate{
		Name:        "workspace-file",
		Title:       "A file or directory in a pyro workspace",
		URITemplate: resourceTemplate,
		Description: "A file under /workspace of a running workspace (at most 256 KiB of it), or a directory's file listing when PATH ends with /.",
	}, r.read)
	s.mcp.AddReceivingMiddleware(r.middleware)
	r.sync(context.Background())
	return r
}

// middleware refreshes the workspace resources before resources/list and
// after every tool call, so that list_changed follows creates and deletes
// (also another process's, seen at the next call).
func (r *resources) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "resources/list":
			r.sync(ctx)
			res, err := next(ctx, method, req)
			if lr, ok := res.(*mcp.ListResourcesResult); ok && err == nil && firstPage(req) {
				lr.Resources = append(lr.Resources, r.files(ctx)...)
			}
			return res, err
		case "tools/call":
			res, err := next(ctx, method, req)
			r.sync(context.WithoutCancel(ctx))
			return res, err
		}
		return next(ctx, method, req)
	}
}

func firstPage(req mcp.Request) bool {
	p, ok := req.GetParams().(*mcp.ListResourcesParams)
	return !ok || p == nil || p.Cursor == ""
}

// sync adds a root resource for each new workspace and removes those of
// workspaces that are gone; the go-sdk notifies list_changed.
func (r *resources) sync(ctx context.Context) {
	wss, err := r.s.eng.ListWorkspaces(ctx)
	if err != nil {
		r.s.log.Warn("listing workspaces for resources", "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, w := range wss {
		seen[w.WorkspaceID] = true
		if r.listed[w.WorkspaceID] {
			continue
		}
		r.listed[w.WorkspaceID] = true
		r.s.mcp.AddResource(&mcp.Resource{
			URI:         fileURI(w.WorkspaceID, ""),
			Name:        "workspace " + w.WorkspaceID,
			Title:       fmt.Sprintf("pyro workspace %s (%s)", w.WorkspaceID, w.Environment),
			Description: "The files under /workspace in this workspace, one per line; read " + fileURI(w.WorkspaceID, "PATH") + " for one of them.",
			MIMEType:    "text/plain",
		}, r.read)
	}
	var gone []string
	for id := range r.listed {
		if !seen[id] {
			gone = append(gone, fileURI(id, ""))
			delete(r.listed, id)
		}
	}
	if len(gone) > 0 {
		r.s.mcp.RemoveResources(gone...)
	}
}

// files lists the files of every running workspace as resources.
func (r *resources) files(ctx context.Context) []*mcp.Resource {
	wss, err := r.s.eng.ListWorkspaces(ctx)
	if err != nil {
		return nil
	}
	var out []*mcp.Resource
	for _, w := range wss {
		if !w.Running {
			continue
		}
		files, _, err := listWorkspaceFiles(ctx, r.s, w.WorkspaceID, "")
		if err != nil {
			r.s.log.Info("listing a workspace's files", "workspace_id", w.WorkspaceID, "err", err)
			continue
		}
		for _, f := range files {
			out = append(out, &mcp.Resource{URI: fileURI(w.WorkspaceID, f.Path), Name: f.Path, Size: f.Size,
				MIMEType: mime.TypeByExtension(path.Ext(f.Path))})
		}
	}
	return out
}

// read answers resources/read for a workspace root, a directory or a file.
func (r *resources) read(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	uri := req.Params.URI
	id, rel, ok := parseFileURI(uri)
	if !ok {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	if rel == "" || strings.HasSuffix(rel, "/") {
		return r.listing(ctx, uri, id, rel)
	}
	f, err := readWorkspaceFile(ctx, r.s, id, rel, MaxResourceBytes)
	switch {
	case errors.Is(err, errNotAFile):
		return r.listing(ctx, uri, id, rel+"/")
	case err != nil:
		return nil, resourceError(uri, err)
	}
	c := &mcp.ResourceContents{URI: uri, MIMEType: mime.TypeByExtension(path.Ext(rel))}
	if utf8.Valid(f.Data) && !strings.ContainsRune(string(f.Data), 0) {
		c.Text = string(f.Data)
		if c.MIMEType == "" {
			c.MIMEType = "text/plain"
		}
	} else {
		c.Blob = f.Data
		if c.MIMEType == "" {
			c.MIMEType = "application/octet-stream"
		}
	}
	if int64(len(f.Data)) < f.Size {
		c.Meta = mcp.Meta{"truncated": true, "size": f.Size}
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{c}}, nil
}

func (r *resources) listing(ctx context.Context, uri, id, dir string) (*mcp.ReadResourceResult, error) {
	files, more, err := listWorkspaceFiles(ctx, r.s, id, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, resourceError(uri, err)
	}
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s\t%d\n", f.Path, f.Size)
	}
	if more {
		fmt.Fprintf(&b, "(only the first %d files are listed)\n", maxListedFiles)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "text/plain", Text: b.String()}}}, nil
}

// resourceError is a read failure as the client sees it: not found, or
// the error with its hint for a model.
func resourceError(uri string, err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return mcp.ResourceNotFoundError(uri)
	}
	msg := err.Error()
	if h := hints.Render(errdefs.HintOf(err), hints.MCP); h != "" {
		msg += " (hint: " + h + ")"
	}
	return errors.New(msg)
}

// fileURI is the resource URI of rel (slash separated, relative to
// /workspace; "" for the workspace itself) in workspace id.
func fileURI(id, rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return resourcePrefix + id + "/" + strings.Join(parts, "/")
}

// parseFileURI splits a resource URI into the workspace id and the path
// under /workspace, refusing paths that climb out of it.
func parseFileURI(uri string) (id, rel string, ok bool) {
	rest, found := strings.CutPrefix(uri, resourcePrefix)
	if !found {
		return "", "", false
	}
	id, rest, _ = strings.Cut(rest, "/")
	rel, err := url.PathUnescape(rest)
	if id == "" || err != nil || strings.HasPrefix(rel, "/") {
		return "", "", false
	}
	for _, p := range strings.Split(rel, "/") {
		if p == ".." {
			return "", "", false
		}
	}
	return id, rel, true
}
