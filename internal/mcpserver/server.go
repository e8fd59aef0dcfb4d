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
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Name is the server name announced in the MCP handshake.
const Name = "pyro"

// DefaultHeartbeat is how often a long tool call sends a progress
// notification, so that clients with short request timeouts keep waiting.
const DefaultHeartbeat = 3 * time.Second

// Options configure a Server. A nil *Options is valid.
type Options struct {
	Logger *slog.Logger
	// Heartbeat is the progress interval of long calls; default DefaultHeartbeat.
	Heartbeat time.Duration
	// Pulls, when set, relays the engine's environment pull progress into
	// the progress notifications of the calls waiting for it. Pass the same
	// Relay's Publish as engine.Options.Progress.
	Pulls *Relay
}

// Server is an MCP server bound to one engine.
type Server struct {
	mcp      *mcp.Server
	eng      *engine.Engine
	log      *slog.Logger
	beat     time.Duration
	pulls    *Relay
	inflight sync.WaitGroup
}

// New builds the server and registers every tool.
func New(e *engine.Engine, opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{eng: e, log: opts.Logger, beat: opts.Heartbeat, pulls: opts.Pulls}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.beat <= 0 {
		s.beat = DefaultHeartbeat
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: Name, Title: "pyro microVM sandboxes", Version: version.Version}, &mcp.ServerOptions{
		Logger:       s.log,
		Instructions: instructions,
	})
	s.register()
	return s
}

// MCP returns the go-sdk server, ready for Run or Connect on any transport.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Wait blocks until every tool call in flight has returned (and so cleaned
// up its guests), or ctx is done. Call it after Run returns, before exiting.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

const instructions = `pyro runs shell commands inside real, disposable microVMs (Debian guests).
Use vm_run for one-shot work: it boots a fresh VM, runs one command and deletes the VM.
Use workspace_create / workspace_exec / workspace_sync_push / workspace_logs / workspace_delete for
multi-step work that needs files to persist between commands in /workspace; delete the workspace when done.
vm_create / vm_start / vm_exec are lower-level; vm_exec deletes its VM after the command.
Environments: ` + "debian:12 (default, with git), debian:12-base (minimal), debian:12-build (compilers)."

// Relay fans environment pull progress out to the calls waiting on it.
type Relay struct {
	mu   sync.Mutex
	next int
	subs map[int]func(catalog.Progress)
}

// Publish hands p to every subscriber. It fits engine.Options.Progress.
func (r *Relay) Publish(p catalog.Progress) {
	if r == nil {
		return
	}
	r.mu.Lock()
	fns := make([]func(catalog.Progress), 0, len(r.subs))
	for _, f := range r.subs {
		fns = append(fns, f)
	}
	r.mu.Unlock()
	for _, f := range fns {
		f(p)
	}
}

// Subscribe calls f with every event until cancel is called.
func (r *Relay) Subscribe(f func(catalog.Progress)) (cancel func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs == nil {
		r.subs = map[int]func(catalog.Progress){}
	}
	id := r.next
	r.next++
	r.subs[id] = f
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

// track marks a call in flight and, when the client asked for progress,
// sends a notification at once and then every heartbeat until stop.
func (s *Server) track(ctx context.Context, req *mcp.CallToolRequest, what string) (stop func()) {
	s.inflight.Add(1)
	var token any
	if req != nil && req.Params != nil {
		token = req.Params.GetProgressToken()
	}
	if token == nil || req.Session == nil {
		return s.inflight.Done
	}
	var mu sync.Mutex
	detail := ""
	unsub := s.pulls.Subscribe(func(p catalog.Progress) {
		msg := "pulling " + p.Environment + ": " + p.Phase
		if p.Step != "" {
			msg += " " + p.Step
		}
		if p.Total > 0 {
			msg += fmt.Sprintf(" %d%%", p.Bytes*100/p.Total)
		}
		mu.Lock()
		detail = msg
		mu.Unlock()
	})
	start := time.Now()
	n := 0.0
	send := func() {
		mu.Lock()
		msg := what
		if detail != "" {
			msg += " (" + detail + ")"
		}
		mu.Unlock()
		msg += fmt.Sprintf(", %ds elapsed", int(time.Since(start).Seconds()))
		n++
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Message: msg, Progress: n}); err != nil {
			s.log.Debug("progress notification", "err", err)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		send()
		t := time.NewTicker(s.beat)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				send()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		unsub()
		s.inflight.Done()
	}
}

// toolError is what a failed call returns: the SDK turns it into a tool
// result with isError set, whose text tells the model what to do next.
type toolError struct {
	code string
	err  error
}

func (e *toolError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "error (%s): %s", e.code, e.err)
	if h := errdefs.HintOf(e.err); h != "" {
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
