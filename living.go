package pyro

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
)

// Living in a workspace: shells, services, secrets, names and labels.
// The types are defined in package api (see types.go for the others).
type (
	// Secret is one secret given at create: Name and Value, or Name and
	// FilePath (a host file holding the value).
	Secret = api.Secret
	// SecretInfo is what a workspace shows of a secret: never its value.
	SecretInfo = api.SecretInfo
	// WorkspaceUpdateOptions change a workspace's name, labels or expiry.
	WorkspaceUpdateOptions = api.WorkspaceUpdateOptions
	// WorkspaceListOptions filter ListWorkspacesWith by labels.
	WorkspaceListOptions = api.WorkspaceListOptions

	// ShellOpenOptions describe a shell to open.
	ShellOpenOptions = api.ShellOpenOptions
	// Shell is one shell of a workspace.
	Shell = api.Shell
	// ShellList is a workspace's shells.
	ShellList = api.ShellList
	// ShellReadOptions describe one read of a shell's output.
	ShellReadOptions = api.ShellReadOptions
	// ShellReadResult is one read: the output from a cursor, and the next cursor.
	ShellReadResult = api.ShellReadResult
	// ShellWriteOptions are input for a shell.
	ShellWriteOptions = api.ShellWriteOptions
	// ShellWriteResult says how much input was written.
	ShellWriteResult = api.ShellWriteResult
	// ShellAttachOptions connect a terminal to a shell.
	ShellAttachOptions = api.ShellAttachOptions
	// TermSize is a terminal's size, for ShellAttachOptions.Resize.
	TermSize = api.TermSize

	// Readiness says when a service is ready: {Type: "http", URL: ...}, ...
	Readiness = api.Readiness
	// ServiceStartOptions describe a service to start.
	ServiceStartOptions = api.ServiceStartOptions
	// Service is one service of a workspace.
	Service = api.Service
	// ServiceList is a workspace's services.
	ServiceList = api.ServiceList
	// ServiceLogsOptions choose the part of a service's log.
	ServiceLogsOptions = api.ServiceLogsOptions
	// ServiceLogs is a service's log.
	ServiceLogs = api.ServiceLogs
	// PublishedPort is a service port reachable from the host.
	PublishedPort = api.PublishedPort
)

// UpdateWorkspace renames a workspace, sets or clears labels, or makes it
// expire TTLSeconds from now.
func (c *Client) UpdateWorkspace(ctx context.Context, workspaceID string, o WorkspaceUpdateOptions) (*Workspace, error) {
	return c.eng.UpdateWorkspace(ctx, workspaceID, o)
}

// ListWorkspacesWith lists the workspaces with every label of o (nil:
// all), the most recently active first.
func (c *Client) ListWorkspacesWith(ctx context.Context, o *WorkspaceListOptions) ([]*Workspace, error) {
	return c.eng.ListWorkspacesWith(ctx, o)
}

// OpenShell starts an interactive shell in the workspace, booting it if
// needed. The shell lives in the guest, whatever happens to this client,
// until CloseShell, its process's exit, or the workspace's stop or delete.
func (c *Client) OpenShell(ctx context.Context, workspaceID string, o ShellOpenOptions) (*Shell, error) {
	return c.eng.OpenShell(ctx, workspaceID, o)
}

// ReadShell returns a shell's output from o.Cursor and the cursor to read
// from next; any number of readers may read the same shell.
func (c *Client) ReadShell(ctx context.Context, workspaceID, shellID string, o ShellReadOptions) (*ShellReadResult, error) {
	return c.eng.ReadShell(ctx, workspaceID, shellID, o)
}

// WriteShell types input into a shell (with a newline unless o.NoNewline).
func (c *Client) WriteShell(ctx context.Context, workspaceID, shellID string, o ShellWriteOptions) (*ShellWriteResult, error) {
	return c.eng.WriteShell(ctx, workspaceID, shellID, o)
}

// SignalShell sends INT, TERM, KILL, HUP or QUIT ("" is INT) to what runs
// in the shell's foreground.
func (c *Client) SignalShell(ctx context.Context, workspaceID, shellID, signal string) (*Shell, error) {
	return c.eng.SignalShell(ctx, workspaceID, shellID, signal)
}

// CloseShell hangs a shell up and forgets it.
func (c *Client) CloseShell(ctx context.Context, workspaceID, shellID string) (*Shell, error) {
	return c.eng.CloseShell(ctx, workspaceID, shellID)
}

// ListShells lists a workspace's shells.
func (c *Client) ListShells(ctx context.Context, workspaceID string) (*ShellList, error) {
	return c.eng.ListShells(ctx, workspaceID)
}

// AttachShell connects a terminal to a shell until the shell ends or ctx
// is cancelled (a detach; the shell keeps running).
func (c *Client) AttachShell(ctx context.Context, workspaceID, shellID string, o ShellAttachOptions) (*Shell, error) {
	return c.eng.AttachShell(ctx, workspaceID, shellID, o)
}

// StartService starts a named service in the workspace (booting it if
// needed) and returns once it is ready; not ready in time, or ended, is an
// error with the end of its log.
func (c *Client) StartService(ctx context.Context, workspaceID, name string, o ServiceStartOptions) (*Service, error) {
	return c.eng.StartService(ctx, workspaceID, name, o)
}

// ListServices lists a workspace's services.
func (c *Client) ListServices(ctx context.Context, workspaceID string) (*ServiceList, error) {
	return c.eng.ListServices(ctx, workspaceID)
}

// StatusService reports one service.
func (c *Client) StatusService(ctx context.Context, workspaceID, name string) (*Service, error) {
	return c.eng.StatusService(ctx, workspaceID, name)
}

// LogsService returns a service's log: its last lines, or all that is kept.
func (c *Client) LogsService(ctx context.Context, workspaceID, name string, o ServiceLogsOptions) (*ServiceLogs, error) {
	return c.eng.LogsService(ctx, workspaceID, name, o)
}

// StopService stops a service: TERM to its process group, then KILL.
func (c *Client) StopService(ctx context.Context, workspaceID, name string) (*Service, error) {
	return c.eng.StopService(ctx, workspaceID, name)
}

// Defaults and names of shells and services.
const (
	DefaultShellMaxChars       = api.DefaultShellMaxChars
	DefaultReadyTimeoutSeconds = api.DefaultReadyTimeoutSeconds
	DefaultReadyIntervalMs     = api.DefaultReadyIntervalMs
	DefaultServiceTailLines    = api.DefaultServiceTailLines
	ReadyFile                  = api.ReadyFile
	ReadyTCP                   = api.ReadyTCP
	ReadyHTTP                  = api.ReadyHTTP
	ReadyCommand               = api.ReadyCommand
	RestartNo                  = api.RestartNo
	RestartOnFailure           = api.RestartOnFailure
)
