package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
)

// wsSnapshotCmd is `pyro workspace snapshot create|list|delete`.
func (a *App) wsSnapshotCmd() *cobra.Command {
	snap := &cobra.Command{Use: "snapshot", Short: "Checkpoints of a workspace's whole disk: create, list, delete"}
	snap.AddCommand(&cobra.Command{
		Use:   "create WORKSPACE_ID NAME",
		Short: "Take a consistent snapshot of the workspace (root and /workspace), running or stopped",
		Example: `  pyro workspace snapshot create 0f3a before-upgrade
  pyro workspace reset 0f3a --snapshot before-upgrade`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Snapshot, error) {
				return c.CreateSnapshot(cmd.Context(), args[0], args[1])
			})
			if err != nil {
				return err
			}
			return a.printResult(s)
		},
	}, &cobra.Command{
		Use:   "list WORKSPACE_ID",
		Short: "List a workspace's snapshots, the baseline first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.SnapshotList, error) {
				return c.ListSnapshots(cmd.Context(), args[0])
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tSEQUENCE\tSIZE\tFORKS")
			for _, s := range l.Snapshots {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", s.Name, s.CreatedAt.Local().Format(time.RFC3339), s.Sequence, api.HumanBytes(s.SizeBytes), len(s.Forks))
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "delete WORKSPACE_ID NAME",
		Short: "Delete a snapshot (not the baseline, nor one a fork was made from)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.SnapshotDeleteResult, error) {
				return c.DeleteSnapshot(cmd.Context(), args[0], args[1])
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.Stdout, "deleted snapshot %s of workspace %s\n", r.Name, r.WorkspaceID)
			return nil
		},
	})
	return snap
}

// wsResetCmd is `pyro workspace reset ID [--snapshot NAME|baseline]`.
func (a *App) wsResetCmd() *cobra.Command {
	var snapshot string
	cmd := &cobra.Command{
		Use:   "reset WORKSPACE_ID [--snapshot NAME|baseline]",
		Short: "Bring the whole workspace back to a snapshot (default: the baseline taken at create) and boot it",
		Long: `reset powers the workspace off at once, brings its root and /workspace back to the
snapshot, and boots it with the same id, name and shape. Shells, services and running
commands end; the log records the reset (the history before it stays, marked with
reset_by); snapshots taken later remain.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Workspace, error) {
				return c.ResetWorkspace(cmd.Context(), args[0], snapshot)
			})
			if err != nil {
				return err
			}
			return a.printResult(w)
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", pyro.BaselineSnapshot, "the snapshot to go back to")
	return cmd
}

// wsForkCmd is `pyro workspace fork ID [--snapshot NAME] [--name NEW]`.
func (a *App) wsForkCmd() *cobra.Command {
	var o pyro.ForkOptions
	cmd := &cobra.Command{
		Use:   "fork WORKSPACE_ID [--snapshot NAME] [--name NEW]",
		Short: "Make and boot a new workspace that starts as a snapshot of this one (copy-on-write)",
		Long: `fork makes a new workspace whose disks start as the snapshot (default: one taken now,
without a name), sharing their blocks with the source until either writes. Both then
change on their own; deleting either never touches what the other reads. The fork's
baseline is the snapshot it came from.`,
		Example: `  pyro workspace fork 0f3a --name try-b
  pyro workspace fork 0f3a --snapshot before-upgrade`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Workspace, error) {
				return c.ForkWorkspace(cmd.Context(), args[0], &o)
			})
			if err != nil {
				return err
			}
			return a.printResult(w)
		},
	}
	cmd.Flags().StringVar(&o.Snapshot, "snapshot", "", "the snapshot to start from (default: one taken now)")
	cmd.Flags().StringVar(&o.Name, "name", "", "a name for the new workspace")
	return cmd
}
