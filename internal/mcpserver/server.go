// Package mcpserver owns pyro's MCP face: the tool set, its schemas and
// descriptions, progress notifications and cancellation. Tools call the
// engine in-process; the server runs on any go-sdk transport (stdio for
// `pyro mcp serve`, streamable HTTP, in-memory in tests).
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hints"
	"github.com/pyro-mcp/pyro/internal/project"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Name is the server name announced in the MCP handshake.
const Name = "pyro"

// DefaultHeartbeat is how often a long tool call with nothing new to report
// still sends a progress notification, so that clients with short request
// timeouts keep waiting.
const DefaultHeartbeat = 3 * time.Second

// Options configure a Server. A nil *Options is valid.
type Options struct {
	Logger *slog.Logger
	// Heartbeat is how often a long call that has nothing new to report
	// still sends a progress notification; default DefaultHeartbeat.
	Heartbeat time.Duration
	// Profile is the tool set to serve (see Profiles); "" means
	// DefaultProfile, every tool.
	Profile string
	// Project, when set, seeds workspace_create calls that name no
	// seed_path.
	Project *project.Source
	// HostPaths confines the host paths a client names (hostpaths.go);
	// nil allows any path.
	HostPaths *HostPaths
}

// Server is an MCP server bound to one engine.
type Server struct {
	mcp     *mcp.Server
	eng     *engine.Engine
	log     *slog.Logger
	beat    time.Duration
	profile string
	project *project.Source
	res     *resources // nil when the profile has no workspace tools
	// hostPaths is where clients may name host paths; nil: anywhere.
	hostPaths *HostPaths
	// decoded, when set (by the fuzz test), sees every call's decoded
	// arguments before the tool runs; an error stops the call there.
	decoded func(tool string, in any) error
}

// New builds the server and registers the tools of its profile, and the
// workspaces' files as resources when the profile has workspace tools.
func New(e *engine.Engine, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{eng: e, log: opts.Logger, beat: opts.Heartbeat, profile: opts.Profile, project: opts.Project, hostPaths: opts.HostPaths}
	if s.profile == "" {
		s.profile = DefaultProfile
	}
	if err := CheckProfile(s.profile); err != nil {
		return nil, err
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.beat <= 0 {
		s.beat = DefaultHeartbeat
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: Name, Title: "pyro microVM sandboxes", Version: version.Version}, &mcp.ServerOptions{
		Logger:       s.log,
		Instructions: s.instructions(),
	})
	s.register()
	if s.serves("workspace_list") {
		s.res = newResources(s)
	}
	// Last added, so outermost: it sees every request first.
	s.mcp.AddReceivingMiddleware(s.guard)
	return s, nil
}

// MCP returns the go-sdk server, ready for Run or Connect on any transport.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Profile is the tool set the server serves.
func (s *Server) Profile() string { return s.profile }

// toolError is what a failed call returns: the SDK turns it into a tool
// result with isError set, whose text tells the model what to do next.
type toolError struct {
	code string
	err  error
}

func (e *toolError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "error (%s): %s", e.code, e.err)
	if h := hints.Render(errdefs.HintOf(e.err), hints.MCP); h != "" {
		fmt.Fprintf(&b, "\nhint: %s", h)
	}
	return b.String()
}

func (e *toolError) Unwrap() error { return e.err }

func (s *Server) fail(ctx context.Context, tool string, err error) error {
	code := errdefs.Code(err)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		code = "cancelled"
		err = fmt.Errorf("%s was cancelled by the client; a VM it created was deleted: %w", tool, err)
	}
	s.log.Info("tool failed", "tool", tool, "code", code, "err", err)
	return &toolError{code: code, err: err}
}

// Dial connects an in-process MCP client to srv over in-memory transports:
// the cheapest way to drive the tools from Go (tests, benchmarks).
// Closing the returned session ends the server side too.
func Dial(ctx context.Context, srv *mcp.Server, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	ct, st := mcp.NewInMemoryTransports()
	if _, err := srv.Connect(ctx, st, nil); err != nil {
		return nil, fmt.Errorf("connecting the server: %w", err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pyro-inprocess", Version: version.Version}, opts).Connect(ctx, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting the client: %w", err)
	}
	return cs, nil
}
