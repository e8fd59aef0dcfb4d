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

// table is how `VERB list` shows one kind of object.
type table[T any] struct {
	short   string
	list    func(*pyro.Client, context.Context) ([]T, error)
	json    func([]T) any // the --json object
	columns []string
	row     func(T) []any
}

// listCmd builds `VERB list`: a table, or one JSON object with --json.
func listCmd[T any](a *App, t table[T]) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: t.short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			items, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) ([]T, error) { return t.list(c, cmd.Context()) })
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(t.json(items))
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, strings.Join(t.columns, "\t"))
			for _, it := range items {
				cells := t.row(it)
				for i, c := range cells {
					if i > 0 {
						fmt.Fprint(tw, "\t")
					}
					if tm, ok := c.(time.Time); ok {
						c = tm.Local().Format(time.RFC3339)
					}
					fmt.Fprint(tw, c)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
}

var vmTable = table[*pyro.VM]{
	short:   "List VMs",
	list:    (*pyro.Client).ListVMs,
	json:    func(vms []*pyro.VM) any { return pyro.VMList{VMs: vms, Count: len(vms)} },
	columns: []string{"VM_ID", "ENVIRONMENT", "STATE", "RUNNING", "MODE", "EXPIRES"},
	row: func(v *pyro.VM) []any {
		return []any{v.VMID, v.Environment, v.State, v.Running, v.ExecutionMode, v.ExpiresAt}
	},
}

var workspaceTable = table[*pyro.Workspace]{
	short:   "List workspaces",
	list:    (*pyro.Client).ListWorkspaces,
	json:    func(ws []*pyro.Workspace) any { return pyro.WorkspaceList{Workspaces: ws, Count: len(ws)} },
	columns: []string{"WORKSPACE_ID", "NAME", "ENVIRONMENT", "STATE", "RUNNING", "COMMANDS", "SHELLS", "SERVICES", "SEED", "LAST_ACTIVITY", "EXPIRES"},
	row: func(w *pyro.Workspace) []any {
		name := w.Name
		if name == "" {
			name = "-"
		}
		return []any{w.WorkspaceID, name, w.Environment, w.State, w.Running, w.CommandCount, w.ShellCount, w.ServiceCount,
			w.WorkspaceSeed.Mode, w.LastActivityAt, w.ExpiresAt}
	},
}
