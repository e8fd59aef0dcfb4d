package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// HostPaths is where an MCP client may name host paths (seed_path,
// source_path, and every later argument that reads or writes the host).
// The client is not trusted with the user's files: a prompt-injected agent
// could otherwise copy ~/.ssh into a guest and send it out. So a path must
// lie under one of the client's declared roots (roots/list) when it
// declares any, else under Fallback, or under one of Always.
type HostPaths struct {
	// Fallback stands for the client's roots when it does not offer the
	// roots capability: the server's working directory (its git top level
	// inside a checkout).
	Fallback []string
	// Always are allowed whatever the client says: --project-path and
	// every --allow-path.
	Always []string
}

// root is one directory a path may lie under, and why.
type root struct {
	dir, why string
}

// hostPath is the one function that decides whether the client of the
// call in ctx may name host path p as argument arg. It returns the path to
// use, absolute with every symlink resolved (so that what is read is what
// was checked), or an error that names the allowed roots. A nil policy
// allows any path.
func (s *Server) hostPath(ctx context.Context, arg, p string) (string, error) {
	if p == "" {
		return p, nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "%s %q", arg, p)
	}
	if s.hostPaths == nil {
		return abs, nil
	}
	roots, err := s.roots(ctx)
	if err != nil {
		return "", err
	}
	real, rerr := filepath.EvalSymlinks(abs)
	if rerr != nil {
		// Say "no such file" only inside a root: outside one, the answer
		// must not tell whether a file exists.
		if _, ok := under(abs, roots); ok && errors.Is(rerr, os.ErrNotExist) {
			return "", errdefs.New(errdefs.ErrNotFound, "", "%s %s does not exist", arg, abs)
		}
		if _, ok := under(abs, roots); ok {
			return "", errdefs.Wrap(errdefs.ErrInvalidArgument, rerr, "", "%s %s", arg, abs)
		}
		return "", outside(arg, abs, roots)
	}
	if _, ok := under(real, roots); !ok {
		if real != abs {
			return "", outside(arg, fmt.Sprintf("%s (which leads to %s)", abs, real), roots)
		}
		return "", outside(arg, abs, roots)
	}
	return real, nil
}

// roots are the directories the client of ctx's call may name, each with
// every symlink resolved.
func (s *Server) roots(ctx context.Context) ([]root, error) {
	var out []root
	add := func(dir, why string) {
		if dir == "" {
			return
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		out = append(out, root{filepath.Clean(dir), why})
	}
	client, err := s.clientRoots(ctx)
	if err != nil {
		return nil, err
	}
	if len(client) > 0 {
		for _, d := range client {
			add(d, "the client's root")
		}
	} else {
		for _, d := range s.hostPaths.Fallback {
			add(d, "the server's working directory")
		}
	}
	for _, d := range s.hostPaths.Always {
		add(d, "allowed when the server started")
	}
	return out, nil
}

// rootsRequest is the id of the roots/list input request (SEP-2322) a
// tool call makes before it names a host path.
const rootsRequest = "pyro.roots"

// errNeedRoots says a tool call must first ask its client for its roots:
// addTool answers such a call (mustAskRoots) with an input-required result
// before it does anything else, the go-sdk fulfils it (asking the client
// itself, on protocols older than 2026-07-28) and the call comes again with
// the client's answer.
var errNeedRoots = errors.New("the client's roots are needed")

// clientRoots are the roots the client of ctx's call listed (file URIs
// only), or nil for a client that offers none: no roots capability or an
// empty list. Those get the server's fallback: a client's roots can only
// replace the working directory, never remove the need for a root.
func (s *Server) clientRoots(ctx context.Context) ([]string, error) {
	req := requestOf(ctx)
	if req == nil || req.Session == nil {
		return nil, nil
	}
	if p := req.Session.InitializeParams(); p == nil || p.Capabilities == nil || p.Capabilities.RootsV2 == nil {
		return nil, nil
	}
	resp, ok := req.Params.InputResponses[rootsRequest]
	if !ok {
		return nil, errNeedRoots
	}
	res, ok := resp.(*mcp.ListRootsResult)
	if !ok {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "the client answered the roots request with %T", resp)
	}
	var dirs []string
	for _, r := range res.Roots {
		if u, err := url.Parse(r.URI); err == nil && u.Scheme == "file" && u.Path != "" {
			dirs = append(dirs, u.Path)
		}
	}
	return dirs, nil
}

// namesHostPaths is implemented by the arguments of every tool that names
// host paths: hostPath decides each of them.
type namesHostPaths interface{ hostPathArgs() []string }

// mustAskRoots says the call in ctx names a host path and its client's
// roots are needed first (see errNeedRoots).
func (s *Server) mustAskRoots(ctx context.Context, in any) bool {
	a, ok := in.(namesHostPaths)
	if !ok || s.hostPaths == nil {
		return false
	}
	for _, p := range a.hostPathArgs() {
		if p != "" {
			_, err := s.clientRoots(ctx)
			return errors.Is(err, errNeedRoots)
		}
	}
	return false
}

// needRoots is the input-required result that asks for the roots.
func needRoots() *mcp.CallToolResult {
	return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{rootsRequest: &mcp.ListRootsParams{}}}
}

// under reports the root p lies under.
func under(p string, roots []root) (root, bool) {
	for _, r := range roots {
		if r.dir == "/" || p == r.dir || strings.HasPrefix(p, r.dir+string(filepath.Separator)) {
			return r, true
		}
	}
	return root{}, false
}

func outside(arg, what string, roots []root) error {
	var names []string
	for _, r := range roots {
		names = append(names, fmt.Sprintf("%s (%s)", r.dir, r.why))
	}
	allowed := "none"
	if len(names) > 0 {
		allowed = strings.Join(names, ", ")
	}
	return errdefs.New(errdefs.ErrInvalidArgument,
		"name a path under one of those roots; to allow another directory, its user adds it as a root in the MCP client or starts the server with `allow_path`",
		"%s %s is outside the directories this MCP server may read; allowed: %s", arg, what, allowed)
}

type requestKey struct{}

// withRequest records a tool call's request in its context, for the checks
// that depend on what the client said (its roots).
func withRequest(ctx context.Context, req *mcp.CallToolRequest) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

func requestOf(ctx context.Context) *mcp.CallToolRequest {
	req, _ := ctx.Value(requestKey{}).(*mcp.CallToolRequest)
	return req
}
