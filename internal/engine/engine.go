// Package engine owns the lifecycle of VMs and workspaces: it ties the
// environment catalog, the VMM backends, the per-VM supervisor processes, the
// agent protocol and the on-disk state together. The CLI, the Go SDK and the
// MCP server are thin faces over it; its options and results are the public
// types of package api.
package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/state"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Options configure an Engine. Zero values use pyro's standard directories.
type Options struct {
	CacheDir   string // environments; default paths.CacheDir()
	StateDir   string // VM and workspace records; default paths.StateDir()
	RuntimeDir string // sockets; default paths.RuntimeDir()
	Logger     *slog.Logger
	// Progress receives the progress of every operation (may be nil);
	// progress.WithFunc adds receivers for one call.
	Progress progress.Func
	// Registry is the OCI registry environments are pulled from: "" means
	// $PYRO_ENV_REGISTRY or the config file, "none" means build locally.
	Registry string
	// Backend forces a backend: "auto" (default), "firecracker", "qemu",
	// "host_compat". Auto picks firecracker when its binary is found and
	// KVM is verified, else qemu (KVM or TCG).
	Backend string
	// BootTimeout bounds boot to the agent handshake; default 90 s (TCG is slow).
	BootTimeout time.Duration
	// Binary is the pyro executable each VM's supervisor runs as; default
	// $PYRO_BIN, else this program. A program other than pyro (a test, a
	// Go SDK user) must name one, or run the supervisor verb itself.
	Binary string
	// AgentBinary is the static binary put into the guest as its agent;
	// default $PYRO_AGENT_BIN, else pyro-agent beside Binary when it is of
	// this release, else Binary.
	AgentBinary string
	// Templates is the warm-start policy: "auto" (default), "on" or
	// "off"; "" means $PYRO_TEMPLATES, else auto. See warm.go.
	Templates string
}

// Engine is safe for concurrent use, and any number of engines in any number
// of processes may act on the same state directories.
type Engine struct {
	opts      Options
	log       *slog.Logger
	catalog   *catalog.Store
	vms       *state.Store
	wss       *state.Store
	layers    *layers.Pool
	templates *template.Store
	inflight  sync.WaitGroup
	warmOnce
	conns agentConns
}

func (e *Engine) storeOf(kind string) *state.Store {
	if kind == kindWorkspace {
		return e.wss
	}
	return e.vms
}

// New opens the engine's directories.
func New(opts Options) (*Engine, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = paths.CacheDir()
	}
	if opts.StateDir == "" {
		opts.StateDir = paths.StateDir()
	}
	if opts.RuntimeDir == "" {
		opts.RuntimeDir = paths.RuntimeDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Backend == "" {
		opts.Backend = os.Getenv("PYRO_BACKEND")
	}
	if opts.Backend == "" {
		opts.Backend = "auto"
	}
	if err := checkBackendChoice(opts.Backend); err != nil {
		return nil, err
	}
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 90 * time.Second
	}
	if opts.Binary == "" {
		opts.Binary = os.Getenv("PYRO_BIN")
	}
	if opts.AgentBinary == "" {
		opts.AgentBinary = os.Getenv("PYRO_AGENT_BIN")
	}
	// Without one, the agent is pyro-agent beside Binary (or this
	// program), else Binary itself (initramfs.FindAgent).
	cat, err := catalog.Open(catalog.Options{Dir: opts.CacheDir, Registry: opts.Registry, Logger: opts.Logger, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	vms, err := state.Open(opts.StateDir, "vms", "vm")
	if err != nil {
		return nil, err
	}
	wss, err := state.Open(opts.StateDir, "workspaces", "workspace")
	if err != nil {
		return nil, err
	}
	pool, err := layers.Open(filepath.Join(opts.StateDir, "layers"))
	if err != nil {
		return nil, err
	}
	if err := paths.EnsureRuntimeDir(opts.RuntimeDir); err != nil {
		return nil, err
	}
	return &Engine{opts: opts, log: opts.Logger, catalog: cat, vms: vms, wss: wss, layers: pool,
		templates: template.Open(opts.CacheDir)}, nil
}

// Catalog returns the environment store.
func (e *Engine) Catalog() *catalog.Store { return e.catalog }

// Wait blocks until every operation in flight has returned, or ctx is done.
// Operations clean up before they return (a cancelled run deletes its VM),
// so a process that serves several callers waits here before it exits.
func (e *Engine) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enter marks an operation in flight until the returned func is called.
func (e *Engine) enter() func() {
	e.inflight.Add(1)
	return e.inflight.Done
}

// start begins an operation that reports progress.
func (e *Engine) start(ctx context.Context, op string, phases ...string) (context.Context, *progress.Op) {
	return progress.Start(ctx, op, e.opts.Progress, phases...)
}

// runDir is the short per-VM directory for sockets.
func (e *Engine) runDir(id string) string { return filepath.Join(e.opts.RuntimeDir, id[:12]) }

// validateCreate fills in the defaults of o and checks it against this
// host: as many vCPUs as it has, and memory up to what the backends offer
// one guest (vmm.MaxGuestMemMiB).
func validateCreate(o *api.CreateVMOptions, defaultTTL int) error {
	if o.VCPUCount == 0 {
		o.VCPUCount = api.DefaultVCPUCount
	}
	if o.MemMiB == 0 {
		o.MemMiB = api.DefaultMemMiB
	}
	if o.TTLSeconds == 0 {
		o.TTLSeconds = defaultTTL
	}
	if _, err := catalog.Lookup(o.Environment); err != nil {
		return err
	}
	maxCPU := runtime.NumCPU()
	if o.VCPUCount < 1 || o.VCPUCount > maxCPU {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `vcpu_count` from 1 to %d (this host's CPUs)", maxCPU),
			"vcpu_count %d is out of range", o.VCPUCount)
	}
	maxMem := vmm.MaxGuestMemMiB()
	if o.MemMiB < api.MinMemMiB || (vmm.HostMemMiB() > 0 && o.MemMiB > maxMem) {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("use a `mem_mib` from %d to %d (this host's memory less 1 GiB or an eighth)", api.MinMemMiB, maxMem),
			"mem_mib %d is out of range", o.MemMiB)
	}
	if o.TTLSeconds < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "use a positive `ttl_seconds`", "ttl_seconds %d is negative", o.TTLSeconds)
	}
	_, err := shapePolicy(&o.Shape)
	return err
}

// validateExec checks a command and fills in its default timeout.
func validateExec(o *api.ExecOptions) error {
	switch {
	case o.Command != "" && len(o.Argv) > 0:
		return errdefs.New(errdefs.ErrInvalidArgument, "set `command` (a shell string) or `argv`, not both", "both a shell command and an argv are set")
	case o.Command == "" && len(o.Argv) == 0:
		return errdefs.New(errdefs.ErrInvalidArgument, "give the command to run: `command` (a shell string such as \"git --version\") or `argv`", "empty command")
	case len(o.Argv) > 0 && o.Argv[0] == "":
		return errdefs.New(errdefs.ErrInvalidArgument, "", "empty command name")
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = api.DefaultTimeoutSeconds
	}
	if o.TimeoutSeconds < 0 || o.TimeoutSeconds > api.MaxTimeoutSeconds {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `timeout_seconds` from 1 to %d", api.MaxTimeoutSeconds),
			"timeout_seconds %d is out of range", o.TimeoutSeconds)
	}
	return nil
}

// argv is the command as it runs: a shell string is /bin/sh -c.
func argv(o api.ExecOptions) []string {
	if o.Command != "" {
		return []string{"/bin/sh", "-c", o.Command}
	}
	return o.Argv
}
