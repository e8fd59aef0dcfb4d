package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// newWorkspaceCmd is the workspace-first surface: a sandbox that stays alive
// across many commands, with /workspace seeded from the user's project.
func (a *App) newWorkspaceCmd() *cobra.Command {
	ws := &cobra.Command{
		Use:   "workspace",
		Short: "Persistent workspaces: create (with a seed), sync push, exec, snapshot, reset, fork, status, logs, delete",
		Long: `A workspace is a microVM that stays alive across many commands. Its /workspace
lives on the workspace's own disk until 'pyro workspace delete', survives the VM
process dying (the next exec boots it again), and is seeded from a host directory or
a local .tar/.tar.gz/.tgz with --seed-path. Snapshots are checkpoints of its whole disk;
reset goes back to one, fork starts a new workspace from one. A workspace is named by
its id, its --name, or any unique prefix of its id. Shells and services live in it
between commands; secrets given at create reach it on a tmpfs and are redacted from
all output.`,
	}
	ws.AddCommand(a.wsCreateCmd(), a.wsSyncCmd(), a.wsExecCmd(), a.wsUpdateCmd(), a.newShellCmd(), a.newServiceCmd(),
		idCmd(a, "status WORKSPACE_ID", "Show a workspace: state, resources, seed, commands, whether its VM runs", (*pyro.Client).StatusWorkspace, a.printResult),
		idCmd(a, "logs WORKSPACE_ID", "Show the workspace's persisted command history", (*pyro.Client).LogsWorkspace, a.printLogs),
		idCmd(a, "delete WORKSPACE_ID", "Stop the workspace's VM and remove its disk, logs and state", (*pyro.Client).DeleteWorkspace, a.printDeleted),
		a.wsListCmd(),
		idCmd(a, "start WORKSPACE_ID", "Boot a stopped workspace again from its disk", (*pyro.Client).StartWorkspace, a.printResult),
		idCmd(a, "stop WORKSPACE_ID", "Power the workspace's VM off; /workspace stays on its disk", (*pyro.Client).StopWorkspace, a.printResult),
		a.wsSnapshotCmd(), a.wsResetCmd(), a.wsForkCmd(), a.wsDiskCmd())
	return ws
}

func (a *App) wsCreateCmd() *cobra.Command {
	var f createFlags
	var lf livingFlags
	var seed string
	var diskGiB int
	cmd := &cobra.Command{
		Use:   "create ENVIRONMENT [--seed-path PATH] [--disk-gib N] [--name NAME] [--label KEY=VALUE]... [--secret NAME=VALUE]... [--secret-file NAME=PATH]...",
		Short: "Create and start a workspace, seeding /workspace from --seed-path",
		Example: `  pyro workspace create debian:12 --seed-path ./my-project
  pyro workspace create debian:12-build --seed-path src.tar.gz --ttl-seconds 7200`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shape, err := f.checked()
			if err != nil {
				return err
			}
			if diskGiB <= 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give a positive number of GiB", "--disk-gib %d is out of range", diskGiB)
			}
			o := pyro.CreateWorkspaceOptions{Environment: args[0], Shape: shape, SeedPath: seed, DiskGiB: diskGiB}
			if err := lf.apply(&o); err != nil {
				return err
			}
			w, err := call(a, clientOptions{backend: f.backend}, func(c *pyro.Client) (*pyro.Workspace, error) {
				return c.CreateWorkspace(cmd.Context(), o)
			})
			if err != nil {
				return err
			}
			return a.printResult(w)
		},
	}
	f.register(cmd, pyro.DefaultWorkspaceTTL)
	cmd.Flags().StringVar(&seed, "seed-path", "", "host directory or .tar/.tar.gz/.tgz to fill /workspace from")
	cmd.Flags().IntVar(&diskGiB, "disk-gib", pyro.DefaultDiskGiB, "size of /workspace's own disk in GiB (sparse: it costs what is written)")
	lf.register(cmd)
	return cmd
}

func (a *App) wsSyncCmd() *cobra.Command {
	sync := &cobra.Command{Use: "sync", Short: "Move host content into a workspace"}
	var dest string
	push := &cobra.Command{
		Use:   "push WORKSPACE_ID SOURCE_PATH [--dest WORKSPACE_PATH]",
		Short: "Import a host directory or archive into a started workspace",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.SyncResult, error) {
				return c.PushWorkspaceSync(cmd.Context(), args[0], args[1], &pyro.PushOptions{Dest: dest})
			})
			if err != nil {
				return err
			}
			return a.printResult(r)
		},
	}
	push.Flags().StringVar(&dest, "dest", pyro.WorkspaceRoot, "where under /workspace to put it")
	sync.AddCommand(push)
	return sync
}

func (a *App) wsExecCmd() *cobra.Command {
	var env secretEnvFlag
	cmd := a.idExecCmd("WORKSPACE_ID", "Run one command in /workspace; the workspace stays alive", "workspace exec",
		func(ctx context.Context, c *pyro.Client, id string, ex pyro.ExecOptions) (any, *pyro.ExecResult, string, error) {
			var err error
			if ex.SecretEnv, err = env.parse(); err != nil {
				return nil, nil, "", err
			}
			r, err := c.ExecWorkspace(ctx, id, ex)
			if err != nil {
				return nil, nil, "", err
			}
			if r.Restarted && ex.Stderr != nil {
				fmt.Fprintf(ex.Stderr, "[workspace] the VM was not running: booted it again from its disk (/workspace kept)\n")
			}
			return r, &r.ExecResult, fmt.Sprintf("workspace_id=%s sequence=%d ", r.WorkspaceID, r.Sequence), nil
		})
	env.register(cmd)
	return cmd
}

func (a *App) printLogs(v any) error {
	if a.JSON {
		return a.printJSON(v)
	}
	l := v.(*pyro.WorkspaceLogs)
	for _, le := range l.Entries {
		if le.Kind != "" && le.Kind != pyro.LogExec && eventText(le) == "" {
			fmt.Fprintf(a.Stdout, "#%d %s %s\n", le.Sequence, le.StartedAt.Local().Format(time.RFC3339), eventLine(le))
			continue
		}
		status := fmt.Sprintf("exit_code=%d", le.ExitCode)
		if le.TimedOut {
			status += " timed_out=true"
		}
		if le.Error != "" {
			status = "error=" + le.Error
		}
		if le.ResetBy > 0 {
			status += fmt.Sprintf(" [rolled back by the reset #%d]", le.ResetBy)
		}
		what := strings.Join(le.Command, " ")
		if ev := eventText(le); ev != "" {
			what = ev
		}
		fmt.Fprintf(a.Stdout, "#%d %s %s (cwd %s, %d ms) %s\n", le.Sequence, le.StartedAt.Local().Format(time.RFC3339),
			what, le.Cwd, le.DurationMs, status)
		for _, out := range []struct{ name, s string }{{"stdout", le.Stdout}, {"stderr", le.Stderr}} {
			if out.s != "" {
				fmt.Fprintf(a.Stdout, "  %s:\n    %s\n", out.name, strings.ReplaceAll(strings.TrimRight(out.s, "\n"), "\n", "\n    "))
			}
		}
	}
	events := 0
	for _, le := range l.Entries {
		if le.Kind != "" && le.Kind != pyro.LogExec {
			events++
		}
	}
	if events == 0 {
		fmt.Fprintf(a.Stdout, "%d command(s)\n", l.Count)
	} else {
		fmt.Fprintf(a.Stdout, "%d command(s), %d other event(s)\n", l.Count-events, events)
	}
	return nil
}

func (a *App) printDeleted(v any) error {
	if a.JSON {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.Stdout, "deleted workspace %s\n", v.(*pyro.WorkspaceDeleteResult).WorkspaceID)
	return nil
}

// eventLine describes a log entry that is not a command.
func eventLine(le pyro.LogEntry) string {
	var s string
	switch le.Kind {
	case pyro.LogSnapshot:
		s = "[snapshot] created " + le.Snapshot
	case pyro.LogReset:
		s = "[reset] to snapshot " + le.Snapshot
	case pyro.LogFork:
		from := le.Snapshot
		if from == "" {
			from = "a snapshot of the moment"
		} else {
			from = "snapshot " + from
		}
		if le.ForkOf != nil {
			s = fmt.Sprintf("[fork] made from workspace %s, %s", le.ForkOf.WorkspaceID, from)
		} else {
			s = fmt.Sprintf("[fork] workspace %s made from %s", le.ForkWorkspaceID, from)
		}
	default:
		s = "[" + le.Kind + "]"
	}
	if le.ResetBy > 0 {
		s += fmt.Sprintf(" [rolled back by the reset #%d]", le.ResetBy)
	}
	if le.Error != "" {
		s += " error=" + le.Error
	}
	return s
}
