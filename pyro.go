package pyro

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// Options configure a Client. A nil *Options uses pyro's standard
// directories, as the pyro command does.
type Options struct {
	CacheDir   string // environments; default $PYRO_CACHE_DIR or ~/.cache/pyro
	StateDir   string // VM and workspace records; default $PYRO_STATE_DIR or ~/.local/state/pyro
	RuntimeDir string // sockets (keep it short); default $PYRO_RUNTIME_DIR or $XDG_RUNTIME_DIR/pyro
	Logger     *slog.Logger
	// Progress receives environment pull progress (may be nil).
	Progress func(Progress)
	// Backend forces a backend: "auto" (default), "firecracker", "qemu" or
	// "host_compat"; "" means $PYRO_BACKEND, else auto.
	Backend string
	// Registry is the OCI registry environments are pulled from,
	// "HOST[:PORT]/prefix"; "" means $PYRO_ENV_REGISTRY or the config file,
	// "none" means always build locally.
	Registry string
}

// Client runs commands in microVMs. It is safe for concurrent use, and any
// number of clients and pyro processes may share the same directories.
type Client struct {
	eng   *engine.Engine
	relay *mcpserver.Relay
	log   *slog.Logger
}

// New opens a Client.
//
// Each VM is watched by a supervisor process, and the guest's agent is the
// same program: both are a statically linked pyro binary, named by
// $PYRO_BIN and $PYRO_AGENT_BIN. When those are unset and the running
// program is not pyro, New sets them to the pyro found on $PATH.
func New(opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	findPyro()
	relay := &mcpserver.Relay{}
	if opts.Progress != nil {
		relay.Subscribe(opts.Progress)
	}
	e, err := engine.New(engine.Options{CacheDir: opts.CacheDir, StateDir: opts.StateDir, RuntimeDir: opts.RuntimeDir,
		Logger: opts.Logger, Progress: relay.Publish, Backend: opts.Backend, Registry: opts.Registry})
	if err != nil {
		return nil, err
	}
	return &Client{eng: e, relay: relay, log: opts.Logger}, nil
}

// CreateServer returns an MCP server exposing this client's engine as the
// pyro tools (vm_run, workspace_create, ...), ready to Run on any go-sdk
// transport: &mcp.StdioTransport{}, a streamable HTTP handler, or
// in-memory transports.
func (c *Client) CreateServer() *mcp.Server {
	return mcpserver.New(c.eng, &mcpserver.Options{Logger: c.log, Pulls: c.relay}).MCP()
}

// CreateServer is New followed by Client.CreateServer.
func CreateServer(opts *Options) (*mcp.Server, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	return c.CreateServer(), nil
}

// Environments.

// ListEnvironments returns the catalog with each entry's install state.
func (c *Client) ListEnvironments(ctx context.Context) ([]Environment, error) {
	return c.eng.Catalog().List(ctx)
}

// RemoveEnvironment uninstalls an environment; its blobs are freed by the
// next PruneEnvironments unless a VM or workspace still uses them.
func (c *Client) RemoveEnvironment(ctx context.Context, name string) error {
	return c.eng.Catalog().Remove(ctx, name)
}

// PushEnvironment publishes an installed environment to an OCI registry as
// an artifact, so that a team can host its own catalog. ref is
// "HOST[:PORT]/repo:tag", or "HOST[:PORT]/prefix" to publish at prefix/NAME.
func (c *Client) PushEnvironment(ctx context.Context, name, ref string) (*PushResult, error) {
	return c.eng.Catalog().Push(ctx, name, ref)
}

// PullEnvironment installs an environment if it is not already: from the
// cache, a registry, or a local build. VM and workspace creation pull on
// demand, so calling it first is optional.
func (c *Client) PullEnvironment(ctx context.Context, name string) (*PullResult, error) {
	source := ""
	cancel := c.relay.Subscribe(func(p catalog.Progress) {
		if p.Phase == "done" && p.Environment == name {
			source = p.Source
		}
	})
	inst, err := c.eng.Catalog().Pull(ctx, name)
	cancel()
	if err != nil {
		return nil, err
	}
	return &PullResult{InstalledEnvironment: inst, Source: source}, nil
}

// InspectEnvironment describes an environment: recipe, packages, blobs.
func (c *Client) InspectEnvironment(ctx context.Context, name string) (*EnvironmentInfo, error) {
	info, err := c.eng.Catalog().Inspect(ctx, name)
	if err != nil {
		return nil, err
	}
	return &EnvironmentInfo{Name: info.Entry.Name, Version: info.Entry.Version, Description: info.Entry.Description,
		Default: info.Entry.Default, Installed: info.Installed, Problem: info.Problem, RegistryRef: info.Registry,
		Manifest: info.Manifest, Paths: info.Paths}, nil
}

// PruneEnvironments removes stale installs and unreferenced blobs; blobs
// in use by VMs are kept.
func (c *Client) PruneEnvironments(ctx context.Context) (*PruneResult, error) {
	return c.eng.Catalog().Prune(ctx)
}

// VMs.

// RunInVM boots a fresh VM, runs one command and deletes the VM, whatever
// happens (a cancelled ctx included). A command that ran is a result, not
// an error, whatever its exit code; check ExitCode and TimedOut.
func (c *Client) RunInVM(ctx context.Context, o RunOptions) (*RunResult, error) {
	ex, err := execOptions(ExecOptions{Command: o.Command, Argv: o.Argv, Cwd: o.Cwd, Env: o.Env, TimeoutSeconds: o.TimeoutSeconds})
	if err != nil {
		return nil, err
	}
	return c.eng.Run(ctx, engine.RunOptions{
		CreateOptions: createOptions(CreateVMOptions{Environment: o.Environment, VCPUCount: o.VCPUCount, MemMiB: o.MemMiB,
			TTLSeconds: o.TTLSeconds, Network: o.Network, AllowHostCompat: o.AllowHostCompat}),
		ExecOptions: ex,
	}, o.Stdout, o.Stderr)
}

// CreateVM records a VM and prepares its disk, pulling the environment if
// needed; it does not boot it.
func (c *Client) CreateVM(ctx context.Context, o CreateVMOptions) (*VM, error) {
	return c.eng.CreateVM(ctx, createOptions(o))
}

// StartVM boots a VM; starting a running VM does nothing.
func (c *Client) StartVM(ctx context.Context, vmID string) (*VM, error) {
	return c.eng.StartVM(ctx, vmID)
}

// ExecVM runs one command in a VM, booting it if needed, and then deletes
// the VM: as the contract says, exec_vm auto-cleans.
func (c *Client) ExecVM(ctx context.Context, vmID string, o ExecOptions) (*VMExecResult, error) {
	ex, err := execOptions(o)
	if err != nil {
		return nil, err
	}
	return c.eng.ExecVM(ctx, vmID, ex, o.Stdout, o.Stderr)
}

// StopVM powers a VM off; its disk stays.
func (c *Client) StopVM(ctx context.Context, vmID string) (*VM, error) {
	return c.eng.StopVM(ctx, vmID)
}

// DeleteVM stops a VM and removes its disk and state.
func (c *Client) DeleteVM(ctx context.Context, vmID string) (*DeleteResult, error) {
	return c.eng.DeleteVM(ctx, vmID)
}

// StatusVM reports a VM, checking that its processes are alive.
func (c *Client) StatusVM(ctx context.Context, vmID string) (*VM, error) {
	return c.eng.StatusVM(ctx, vmID)
}

// ListVMs reports every VM.
func (c *Client) ListVMs(ctx context.Context) ([]*VM, error) {
	return c.eng.ListVMs(ctx)
}

// NetworkInfoVM describes a VM's network.
func (c *Client) NetworkInfoVM(ctx context.Context, vmID string) (*NetworkInfo, error) {
	return c.eng.NetworkInfo(ctx, vmID)
}

// ReapExpired stops and deletes every VM and workspace past its TTL.
func (c *Client) ReapExpired(ctx context.Context) (*ReapResult, error) {
	return c.eng.ReapExpired(ctx)
}

// Workspaces.

// CreateWorkspace creates and boots a persistent workspace, seeding
// /workspace from SeedPath first when set.
func (c *Client) CreateWorkspace(ctx context.Context, o CreateWorkspaceOptions) (*Workspace, error) {
	return c.eng.CreateWorkspace(ctx, engine.CreateWorkspaceOptions{
		CreateOptions: createOptions(CreateVMOptions{Environment: o.Environment, VCPUCount: o.VCPUCount, MemMiB: o.MemMiB,
			TTLSeconds: o.TTLSeconds, Network: o.Network, AllowHostCompat: o.AllowHostCompat}),
		SeedPath: o.SeedPath,
	})
}

// PushWorkspaceSync copies a host directory or .tar/.tar.gz/.tgz archive
// into a started workspace, at /workspace or opts.Dest under it.
func (c *Client) PushWorkspaceSync(ctx context.Context, workspaceID, sourcePath string, opts *PushOptions) (*SyncResult, error) {
	dest := WorkspaceRoot
	if opts != nil && opts.Dest != "" {
		dest = opts.Dest
	}
	return c.eng.PushWorkspaceSync(ctx, workspaceID, sourcePath, dest)
}

// ExecWorkspace runs one command in the workspace (in /workspace unless
// o.Cwd says otherwise) and leaves it alive; the command is logged.
func (c *Client) ExecWorkspace(ctx context.Context, workspaceID string, o ExecOptions) (*WorkspaceExecResult, error) {
	ex, err := execOptions(o)
	if err != nil {
		return nil, err
	}
	return c.eng.ExecWorkspace(ctx, workspaceID, ex, o.Stdout, o.Stderr)
}

// StatusWorkspace reports a workspace.
func (c *Client) StatusWorkspace(ctx context.Context, workspaceID string) (*Workspace, error) {
	return c.eng.StatusWorkspace(ctx, workspaceID)
}

// LogsWorkspace returns a workspace's command history, oldest first.
func (c *Client) LogsWorkspace(ctx context.Context, workspaceID string) (*WorkspaceLogs, error) {
	return c.eng.LogsWorkspace(ctx, workspaceID)
}

// DeleteWorkspace stops a workspace and deletes its disk, files and logs.
func (c *Client) DeleteWorkspace(ctx context.Context, workspaceID string) (*WorkspaceDeleteResult, error) {
	return c.eng.DeleteWorkspace(ctx, workspaceID)
}

// ListWorkspaces reports every workspace.
func (c *Client) ListWorkspaces(ctx context.Context) ([]*Workspace, error) {
	return c.eng.ListWorkspaces(ctx)
}

// StartWorkspace boots a stopped workspace from its disk. ExecWorkspace
// and PushWorkspaceSync do this on their own when needed.
func (c *Client) StartWorkspace(ctx context.Context, workspaceID string) (*Workspace, error) {
	return c.eng.StartWorkspace(ctx, workspaceID)
}

// StopWorkspace powers a workspace off; its files stay.
func (c *Client) StopWorkspace(ctx context.Context, workspaceID string) (*Workspace, error) {
	return c.eng.StopWorkspace(ctx, workspaceID)
}

func createOptions(o CreateVMOptions) engine.CreateOptions {
	return engine.CreateOptions{Environment: o.Environment, VCPUCount: o.VCPUCount, MemMiB: o.MemMiB,
		TTLSeconds: o.TTLSeconds, Network: o.Network, AllowHostCompat: o.AllowHostCompat}
}

func execOptions(o ExecOptions) (engine.ExecOptions, error) {
	switch {
	case o.Command != "" && len(o.Argv) > 0:
		return engine.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "set Command (a shell string) or Argv, not both", "both Command and Argv are set")
	case o.Command == "" && len(o.Argv) == 0:
		return engine.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "set the command, "+defaultCommandExamples, "empty command")
	}
	return engine.ExecOptions{Shell: o.Command, Command: o.Argv, Cwd: o.Cwd, Env: o.Env, TimeoutSeconds: o.TimeoutSeconds}, nil
}

// findPyro points $PYRO_BIN and $PYRO_AGENT_BIN at the pyro on $PATH when
// they are unset and this program is not pyro itself.
func findPyro() {
	if os.Getenv("PYRO_BIN") != "" {
		return
	}
	if self, err := os.Executable(); err == nil && filepath.Base(self) == "pyro" {
		return
	}
	p, err := exec.LookPath("pyro")
	if err != nil {
		return
	}
	os.Setenv("PYRO_BIN", p)
	if os.Getenv("PYRO_AGENT_BIN") == "" {
		os.Setenv("PYRO_AGENT_BIN", p)
	}
}
