// Package engine owns the lifecycle of VMs and workspaces: it ties the
// environment catalog, the VMM backends, the per-VM supervisor processes, the
// agent protocol and the on-disk state together. The CLI, the Go SDK and the
// MCP server are thin faces over it.
package engine

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/state"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Options configure an Engine. Zero values use pyro's standard directories.
type Options struct {
	CacheDir   string // environments; default paths.CacheDir()
	StateDir   string // VM and workspace records; default paths.StateDir()
	RuntimeDir string // sockets; default paths.RuntimeDir()
	Logger     *slog.Logger
	// Progress receives environment pull/build progress (may be nil).
	Progress func(catalog.Progress)
	// Registry is the OCI registry environments are pulled from: "" means
	// $PYRO_ENV_REGISTRY or the config file, "none" means build locally.
	Registry string
	// Backend forces a backend: "auto" (default), "firecracker", "qemu",
	// "host_compat". Auto picks firecracker when its binary is found and
	// KVM is verified, else qemu (KVM or TCG).
	Backend string
	// BootTimeout bounds boot to the agent handshake; default 90 s (TCG is slow).
	BootTimeout time.Duration
}

// Engine is safe for concurrent use, and any number of engines in any number
// of processes may act on the same state directories.
type Engine struct {
	opts    Options
	log     *slog.Logger
	catalog *catalog.Store
	vms     *state.Store
	wss     *state.Store
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
	if err := paths.EnsureRuntimeDir(opts.RuntimeDir); err != nil {
		return nil, err
	}
	return &Engine{opts: opts, log: opts.Logger, catalog: cat, vms: vms, wss: wss}, nil
}

// Catalog returns the environment store.
func (e *Engine) Catalog() *catalog.Store { return e.catalog }

// runDir is the short per-VM directory for sockets.
func (e *Engine) runDir(id string) string { return filepath.Join(e.opts.RuntimeDir, id[:12]) }

func (e *Engine) validateCreate(o *CreateOptions) error {
	if o.VCPUCount == 0 {
		o.VCPUCount = DefaultVCPUs
	}
	if o.MemMiB == 0 {
		o.MemMiB = DefaultMemMiB
	}
	if o.TTLSeconds == 0 {
		o.TTLSeconds = DefaultVMTTLSeconds
	}
	if _, err := catalog.Lookup(o.Environment); err != nil {
		return err
	}
	maxCPU := runtime.NumCPU()
	if o.VCPUCount < 1 || o.VCPUCount > maxCPU {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a vcpu_count from 1 to %d (this host's CPUs)", maxCPU),
			"vcpu_count %d is out of range", o.VCPUCount)
	}
	maxMem := vmm.HostMemMiB() - 512
	if o.MemMiB < MinMemMiB || (maxMem > 0 && o.MemMiB > maxMem) {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a mem_mib from %d to %d (this host's memory less 512 MiB)", MinMemMiB, maxMem),
			"mem_mib %d is out of range", o.MemMiB)
	}
	if o.TTLSeconds < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "use a positive ttl_seconds", "ttl_seconds %d is negative", o.TTLSeconds)
	}
	return nil
}

func validateExec(o *ExecOptions) error {
	if len(o.Command) == 0 && o.Shell == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "give the command after --, e.g. pyro run debian:12 -- git --version", "empty command")
	}
	if len(o.Command) > 0 && o.Command[0] == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "empty command name")
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if o.TimeoutSeconds < 0 || o.TimeoutSeconds > MaxTimeoutSeconds {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a timeout_seconds from 1 to %d", MaxTimeoutSeconds),
			"timeout_seconds %d is out of range", o.TimeoutSeconds)
	}
	return nil
}
