package pyro

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hints"
	"github.com/pyro-mcp/pyro/internal/mcpserver"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/project"
)

// Options configure a Client. A nil *Options uses pyro's standard
// directories, as the pyro command does.
type Options struct {
	CacheDir   string // environments; default $PYRO_CACHE_DIR or ~/.cache/pyro
	StateDir   string // VM and workspace records; default $PYRO_STATE_DIR or ~/.local/state/pyro
	RuntimeDir string // sockets (keep it short); default $PYRO_RUNTIME_DIR or $XDG_RUNTIME_DIR/pyro
	Logger     *slog.Logger
	// Progress receives the progress of every long operation of the client
	// (pulls, builds, boots, seeds, pushes); it may be nil. WithProgress
	// adds a receiver for one call.
	Progress func(Progress)
	// Backend forces a backend: "auto" (default), "firecracker", "qemu" or
	// "host_compat"; "" means $PYRO_BACKEND, else auto.
	Backend string
	// Registry is the OCI registry environments are pulled from,
	// "HOST[:PORT]/prefix"; "" means $PYRO_ENV_REGISTRY or the config file,
	// "none" means always build locally.
	Registry string
	// Binary is the statically linked pyro that runs each VM's supervisor
	// and, inside the guest, its agent. "" means $PYRO_BIN (and
	// $PYRO_AGENT_BIN for the agent), else this program when it is pyro,
	// else the pyro found on $PATH.
	Binary string
}

// Client runs commands in microVMs. It is safe for concurrent use, and any
// number of clients and pyro processes may share the same directories.
type Client struct {
	eng *engine.Engine
	log *slog.Logger
}

// New opens a Client. It changes nothing in the calling process.
func New(opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	e, err := engine.New(engine.Options{CacheDir: opts.CacheDir, StateDir: opts.StateDir, RuntimeDir: opts.RuntimeDir,
		Logger: opts.Logger, Progress: opts.Progress, Backend: opts.Backend, Registry: opts.Registry,
		Binary: findPyro(opts.Binary)})
	if err != nil {
		return nil, err
	}
	return &Client{eng: e, log: opts.Logger}, nil
}

// findPyro is the pyro binary to use: explicit when set, else $PYRO_BIN,
// else "" (this program) when it is pyro, else the pyro on $PATH.
func findPyro(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if b := os.Getenv("PYRO_BIN"); b != "" {
		return b
	}
	if self, err := os.Executable(); err == nil && filepath.Base(self) == "pyro" {
		return ""
	}
	if p, err := exec.LookPath("pyro"); err == nil {
		return p
	}
	return ""
}

// WithProgress returns a context whose calls report their progress to f as
// well as to Options.Progress: for one call's own progress when a client
// serves several callers.
func WithProgress(ctx context.Context, f func(Progress)) context.Context {
	return progress.WithFunc(ctx, f)
}

// CreateServer returns an MCP server exposing this client's engine as the
// pyro tools (vm_run, workspace_create, ...), ready to Run on any go-sdk
// transport: &mcp.StdioTransport{}, a streamable HTTP handler, or
// in-memory transports. It serves every tool (ProfileWorkspaceFull) and has
// no project: CreateServerWith(ctx, nil). Before the program exits, Close waits
// for the calls still running to clean up.
func (c *Client) CreateServer() *mcp.Server {
	s, err := c.CreateServerWith(context.Background(), nil)
	if err != nil {
		panic("pyro: CreateServer: " + err.Error()) // nil options cannot fail
	}
	return s
}

// MCP tool profiles, for ServerOptions.Profile and `pyro mcp serve --profile`.
const (
	ProfileVMRun         = mcpserver.ProfileVMRun         // only vm_run
	ProfileWorkspaceCore = mcpserver.ProfileWorkspaceCore // the workspace loop, narrowed: what `pyro host connect` writes
	ProfileWorkspaceFull = mcpserver.ProfileWorkspaceFull // every tool; the default
)

// ServerOptions shape an MCP server. A nil *ServerOptions is valid: every
// tool, no project.
type ServerOptions struct {
	// Profile is the tool set: ProfileWorkspaceFull (""), ProfileWorkspaceCore
	// or ProfileVMRun. A tool a profile leaves out is absent from tools/list.
	Profile string
	// ProjectPath, when set, seeds workspace_create calls that name no
	// seed_path: a git checkout's tracked files and untracked ones it does
	// not ignore (never .git), or every file of a plain directory. The
	// pyro command sets it to the checkout it runs in.
	ProjectPath string
	// RepoURL, instead of ProjectPath, seeds those calls from a clean clone
	// of a repository at RepoRef (a branch, tag or commit; "" means its
	// default branch).
	RepoURL string
	RepoRef string
	// AllowPaths are host directories MCP clients may name in seed_path
	// and source_path besides their declared roots (or, for a client that
	// declares none, the server's working directory: its git top level
	// inside a checkout) and ProjectPath. Any other host path is refused:
	// the model behind a client is not trusted with the user's files.
	// []string{"/"} allows every path, as 2.4 did.
	AllowPaths []string
}

// CreateServerWith is CreateServer with a profile and a default seed; ctx
// bounds the look at the project (is it a git checkout?).
func (c *Client) CreateServerWith(ctx context.Context, opts *ServerOptions) (*mcp.Server, error) {
	if opts == nil {
		opts = &ServerOptions{}
	}
	mo := &mcpserver.Options{Logger: c.log, Profile: opts.Profile, HostPaths: hostPaths(ctx, opts)}
	switch {
	case opts.ProjectPath != "" && opts.RepoURL != "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "set `project_path` or `repo_url`, not both", "two default seeds")
	case opts.RepoURL != "":
		src, err := project.FromRepo(opts.RepoURL, opts.RepoRef)
		if err != nil {
			return nil, err
		}
		mo.Project = src
	case opts.RepoRef != "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "set `repo_url` too", "a repository ref without a repository")
	case opts.ProjectPath != "":
		src, err := project.FromDir(ctx, opts.ProjectPath)
		if err != nil {
			return nil, err
		}
		mo.Project = src
	}
	s, err := mcpserver.New(c.eng, mo)
	if err != nil {
		return nil, err
	}
	return s.MCP(), nil
}

// hostPaths is where the server's clients may name host paths: their
// roots or the working directory, the project, and opts.AllowPaths.
func hostPaths(ctx context.Context, opts *ServerOptions) *mcpserver.HostPaths {
	hp := &mcpserver.HostPaths{Always: append([]string(nil), opts.AllowPaths...)}
	if opts.ProjectPath != "" {
		hp.Always = append(hp.Always, opts.ProjectPath)
	}
	if wd, err := os.Getwd(); err == nil {
		if top := project.Detect(ctx, wd); top != "" {
			wd = top
		}
		hp.Fallback = []string{wd}
	}
	return hp
}

// CreateServer is New followed by Client.CreateServer.
func CreateServer(opts *Options) (*mcp.Server, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	return c.CreateServer(), nil
}

// Close waits until every call in flight on the client (MCP tool calls
// included) has returned, or ctx is done. Calls clean up before they
// return — a cancelled RunInVM deletes its VM — so a program that cancels
// its calls on exit waits here first. The client stays usable.
func (c *Client) Close(ctx context.Context) error {
	return c.eng.Wait(ctx)
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
	return c.eng.Catalog().Pull(ctx, name)
}

// InspectEnvironment describes an environment: recipe, packages, blobs,
// and what the workspaces built on it occupy.
func (c *Client) InspectEnvironment(ctx context.Context, name string) (*EnvironmentInfo, error) {
	return c.eng.InspectEnvironment(ctx, name)
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
	return c.eng.Run(ctx, o)
}

// CreateVM records a VM and prepares its disk, pulling the environment if
// needed; it does not boot it.
func (c *Client) CreateVM(ctx context.Context, o CreateVMOptions) (*VM, error) {
	return c.eng.CreateVM(ctx, o)
}

// StartVM boots a VM; starting a running VM does nothing.
func (c *Client) StartVM(ctx context.Context, vmID string) (*VM, error) {
	return c.eng.StartVM(ctx, vmID)
}

// ExecVM runs one command in a VM, booting it if needed, and then deletes
// the VM: as the contract says, exec_vm auto-cleans.
func (c *Client) ExecVM(ctx context.Context, vmID string, o ExecOptions) (*VMExecResult, error) {
	return c.eng.ExecVM(ctx, vmID, o)
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
	return c.eng.CreateWorkspace(ctx, o)
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
	return c.eng.ExecWorkspace(ctx, workspaceID, o)
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

// Snapshots, reset and fork.

// CreateSnapshot takes a snapshot named name of the whole workspace (root
// and /workspace), running or stopped. A running workspace's filesystems
// are flushed and frozen for the moment it takes; commands keep running.
func (c *Client) CreateSnapshot(ctx context.Context, workspaceID, name string) (*Snapshot, error) {
	return c.eng.CreateSnapshot(ctx, workspaceID, name)
}

// ListSnapshots lists a workspace's snapshots, the baseline first.
func (c *Client) ListSnapshots(ctx context.Context, workspaceID string) (*SnapshotList, error) {
	return c.eng.ListSnapshots(ctx, workspaceID)
}

// DeleteSnapshot deletes a snapshot; the baseline and a snapshot a fork
// was made from cannot be deleted (ErrFailedPrecondition, ErrConflict).
func (c *Client) DeleteSnapshot(ctx context.Context, workspaceID, name string) (*SnapshotDeleteResult, error) {
	return c.eng.DeleteSnapshot(ctx, workspaceID, name)
}

// ResetWorkspace brings the whole workspace back to a snapshot ("" means
// BaselineSnapshot) and boots it, with the same id, name and shape.
func (c *Client) ResetWorkspace(ctx context.Context, workspaceID, snapshot string) (*Workspace, error) {
	return c.eng.ResetWorkspace(ctx, workspaceID, snapshot)
}

// ForkWorkspace makes and boots a new workspace whose disks start as a
// snapshot of workspaceID (opts.Snapshot, or one taken now), sharing its
// blocks copy-on-write. A nil *ForkOptions is valid.
func (c *Client) ForkWorkspace(ctx context.Context, workspaceID string, opts *ForkOptions) (*Workspace, error) {
	var o ForkOptions
	if opts != nil {
		o = *opts
	}
	return c.eng.ForkWorkspace(ctx, workspaceID, o)
}

// Disks of a stopped workspace, read offline.

// ListWorkspaceDisk lists path (a directory or file, "" for /workspace)
// on a stopped workspace's disks without booting it.
func (c *Client) ListWorkspaceDisk(ctx context.Context, workspaceID, path string, recursive bool) (*DiskList, error) {
	return c.eng.ListWorkspaceDisk(ctx, workspaceID, path, recursive)
}

// ReadWorkspaceDisk reads up to maxBytes (0: DefaultDiskReadBytes) of a
// file on a stopped workspace's disks.
func (c *Client) ReadWorkspaceDisk(ctx context.Context, workspaceID, path string, maxBytes int) (*DiskRead, error) {
	return c.eng.ReadWorkspaceDisk(ctx, workspaceID, path, maxBytes)
}

// ExportWorkspaceDisk writes a stopped workspace's disk to outputPath as a
// raw ext4 image, runtime-only paths removed. A nil *DiskExportOptions is
// valid.
func (c *Client) ExportWorkspaceDisk(ctx context.Context, workspaceID, outputPath string, opts *DiskExportOptions) (*DiskExportResult, error) {
	var o DiskExportOptions
	if opts != nil {
		o = *opts
	}
	return c.eng.ExportWorkspaceDisk(ctx, workspaceID, outputPath, o)
}

// Errors.

// ErrorCode names err's class as the CLI's JSON and the MCP tools do:
// "not_found", "invalid_argument", "unavailable", ... ("internal" if none).
func ErrorCode(err error) string { return errdefs.Code(err) }

// ErrorHint returns what to do about err, or "", naming the SDK's own
// fields where it matters (AllowHostCompat, PushOptions.Dest, ...).
func ErrorHint(err error) string { return hints.Render(errdefs.HintOf(err), hints.Go) }
