package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
)

// newWorkspaceCmd is the workspace-first surface: a sandbox that stays alive
// across many commands, with /workspace seeded from the user's project.
func (a *App) newWorkspaceCmd() *cobra.Command {
	ws := &cobra.Command{
		Use:   "workspace",
		Short: "Persistent workspaces: create (with a seed), sync push, exec, status, logs, delete",
		Long: `A workspace is a microVM that stays alive across many commands. Its /workspace
lives on the workspace's own disk until 'pyro workspace delete', survives the VM
process dying (the next exec boots it again), and is seeded from a host directory or
a local .tar/.tar.gz/.tgz with --seed-path. Any unique prefix of a workspace_id works.`,
	}
	ws.AddCommand(a.wsCreateCmd(), a.wsSyncCmd(), a.wsExecCmd(), a.wsStatusCmd(), a.wsLogsCmd(),
		a.wsDeleteCmd(), a.wsListCmd(), a.wsStartStopCmd("start"), a.wsStartStopCmd("stop"))
	return ws
}

func (a *App) wsCreateCmd() *cobra.Command {
	var f createFlags
	var seed string
	cmd := &cobra.Command{
		Use:   "create ENVIRONMENT [--seed-path PATH]",
		Short: "Create and start a workspace, seeding /workspace from --seed-path",
		Example: `  pyro workspace create debian:12 --seed-path ./my-project
  pyro workspace create debian:12-build --seed-path src.tar.gz --ttl-seconds 7200`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(args[0])
			if err != nil {
				return err
			}
			e, err := a.clientFor(f.backend)
			if err != nil {
				return err
			}
			w, err := e.CreateWorkspace(cmd.Context(), pyro.CreateWorkspaceOptions{Environment: opts.Environment, VCPUCount: opts.VCPUCount,
				MemMiB: opts.MemMiB, TTLSeconds: opts.TTLSeconds, Network: opts.Network, AllowHostCompat: opts.AllowHostCompat, SeedPath: seed})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(w)
			}
			return printFields(a.Stdout, w)
		},
	}
	f.register(cmd, pyro.DefaultWorkspaceTTL)
	cmd.Flags().StringVar(&seed, "seed-path", "", "host directory or .tar/.tar.gz/.tgz to fill /workspace from")
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
			e, err := a.client()
			if err != nil {
				return err
			}
			r, err := e.PushWorkspaceSync(cmd.Context(), args[0], args[1], &pyro.PushOptions{Dest: dest})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			return printFields(a.Stdout, r)
		},
	}
	push.Flags().StringVar(&dest, "dest", pyro.WorkspaceRoot, "where under /workspace to put it")
	sync.AddCommand(push)
	return sync
}

func (a *App) wsExecCmd() *cobra.Command {
	return a.idExecCmd("WORKSPACE_ID", "Run one command in /workspace; the workspace stays alive", "workspace exec",
		func(ctx context.Context, c *pyro.Client, id string, ex pyro.ExecOptions) (any, *pyro.ExecResult, string, error) {
			r, err := c.ExecWorkspace(ctx, id, ex)
			if err != nil {
				return nil, nil, "", err
			}
			if r.Restarted && ex.Stderr != nil {
				fmt.Fprintf(ex.Stderr, "[workspace] the VM was not running: booted it again from its disk (/workspace kept)\n")
			}
			return r, &r.ExecResult, fmt.Sprintf("workspace_id=%s sequence=%d ", r.WorkspaceID, r.Sequence), nil
		})
}

func (a *App) wsStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status WORKSPACE_ID",
		Short: "Show a workspace: state, resources, seed, commands, whether its VM runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			w, err := e.StatusWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(w)
			}
			return printFields(a.Stdout, w)
		},
	}
}

func (a *App) wsLogsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logs WORKSPACE_ID",
		Short: "Show the workspace's persisted command history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			l, err := e.LogsWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			for _, le := range l.Entries {
				status := fmt.Sprintf("exit_code=%d", le.ExitCode)
				if le.TimedOut {
					status += " timed_out=true"
				}
				if le.Error != "" {
					status = "error=" + le.Error
				}
				fmt.Fprintf(a.Stdout, "#%d %s %s (cwd %s, %d ms) %s\n", le.Sequence, le.StartedAt.Local().Format(time.RFC3339),
					strings.Join(le.Command, " "), le.Cwd, le.DurationMs, status)
				for _, out := range []struct{ name, s string }{{"stdout", le.Stdout}, {"stderr", le.Stderr}} {
					if out.s != "" {
						fmt.Fprintf(a.Stdout, "  %s:\n    %s\n", out.name, strings.ReplaceAll(strings.TrimRight(out.s, "\n"), "\n", "\n    "))
					}
				}
			}
			fmt.Fprintf(a.Stdout, "%d command(s)\n", l.Count)
			return nil
		},
	}
}

func (a *App) wsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete WORKSPACE_ID",
		Short: "Stop the workspace's VM and remove its disk, logs and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			r, err := e.DeleteWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.Stdout, "deleted workspace %s\n", r.WorkspaceID)
			return nil
		},
	}
}

func (a *App) wsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List workspaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			wss, err := e.ListWorkspaces(cmd.Context())
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(map[string]any{"workspaces": wss, "count": len(wss)})
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKSPACE_ID\tENVIRONMENT\tSTATE\tRUNNING\tCOMMANDS\tSEED\tEXPIRES")
			for _, w := range wss {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\t%s\n", w.WorkspaceID, w.Environment, w.State, w.Running, w.CommandCount,
					w.WorkspaceSeed.Mode, w.ExpiresAt.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func (a *App) wsStartStopCmd(verb string) *cobra.Command {
	short := "Boot a stopped workspace again from its disk"
	if verb == "stop" {
		short = "Power the workspace's VM off; /workspace stays on its disk"
	}
	return &cobra.Command{
		Use:   verb + " WORKSPACE_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			var w *pyro.Workspace
			if verb == "start" {
				w, err = e.StartWorkspace(cmd.Context(), args[0])
			} else {
				w, err = e.StopWorkspace(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(w)
			}
			return printFields(a.Stdout, w)
		},
	}
}
