package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
)

// newVMCmd is the advanced lifecycle: create, start, exec, stop, delete,
// status, list, network-info, reap. Most users want `pyro run` or workspaces.
func (a *App) newVMCmd() *cobra.Command {
	vm := &cobra.Command{
		Use:   "vm",
		Short: "Advanced VM lifecycle: create, start, exec (auto-cleans), stop, delete, status",
	}
	vm.AddCommand(a.vmCreateCmd(), a.vmIDCmd("start", "Boot a created or stopped VM", func(cmd *cobra.Command, e *pyro.Client, id string) (any, error) {
		return e.StartVM(cmd.Context(), id)
	}), a.vmExecCmd(), a.vmIDCmd("stop", "Power a VM off (its disk stays until delete)", func(cmd *cobra.Command, e *pyro.Client, id string) (any, error) {
		return e.StopVM(cmd.Context(), id)
	}), a.vmIDCmd("delete", "Stop a VM and remove its disk and state", func(cmd *cobra.Command, e *pyro.Client, id string) (any, error) {
		return e.DeleteVM(cmd.Context(), id)
	}), a.vmIDCmd("status", "Show a VM's state and whether its process is alive", func(cmd *cobra.Command, e *pyro.Client, id string) (any, error) {
		return e.StatusVM(cmd.Context(), id)
	}), a.vmIDCmd("network-info", "Show a VM's network configuration", func(cmd *cobra.Command, e *pyro.Client, id string) (any, error) {
		return e.NetworkInfoVM(cmd.Context(), id)
	}), a.vmListCmd(), a.vmReapCmd())
	return vm
}

func (a *App) vmCreateCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create ENVIRONMENT",
		Short: "Create a VM (pulling its environment if needed) without booting it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(args[0])
			if err != nil {
				return err
			}
			e, err := a.clientFor(f.backend)
			if err != nil {
				return err
			}
			vm, err := e.CreateVM(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return a.printVM(vm)
		},
	}
	f.register(cmd, pyro.DefaultVMTTLSeconds)
	return cmd
}

func (a *App) vmIDCmd(use, short string, do func(*cobra.Command, *pyro.Client, string) (any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " VM_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			v, err := do(cmd, e, args[0])
			if err != nil {
				return err
			}
			if vm, ok := v.(*pyro.VM); ok {
				return a.printVM(vm)
			}
			if a.JSON {
				return a.printJSON(v)
			}
			return printFields(a.Stdout, v)
		},
	}
}

func (a *App) vmExecCmd() *cobra.Command {
	return a.idExecCmd("VM_ID", "Run one command in a VM, then delete the VM (exec auto-cleans)", "vm exec",
		func(ctx context.Context, c *pyro.Client, id string, ex pyro.ExecOptions) (any, *pyro.ExecResult, string, error) {
			res, err := c.ExecVM(ctx, id, ex)
			if err != nil {
				return nil, nil, "", err
			}
			return res, &res.ExecResult, fmt.Sprintf("vm_id=%s ", res.VMID), nil
		})
}

func (a *App) vmListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			vms, err := e.ListVMs(cmd.Context())
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(map[string]any{"vms": vms, "count": len(vms)})
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VM_ID\tENVIRONMENT\tSTATE\tRUNNING\tMODE\tEXPIRES")
			for _, v := range vms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", v.VMID, v.Environment, v.State, v.Running, v.ExecutionMode, v.ExpiresAt.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func (a *App) vmReapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reap",
		Short: "Stop and delete every VM past its TTL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.client()
			if err != nil {
				return err
			}
			r, err := e.ReapExpired(cmd.Context())
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.Stdout, "reaped %d expired VM(s)\n", r.Count)
			for _, id := range r.Reaped {
				fmt.Fprintf(a.Stdout, "  %s\n", id)
			}
			return nil
		},
	}
}

func (a *App) printVM(v *pyro.VM) error {
	if a.JSON {
		return a.printJSON(v)
	}
	return printFields(a.Stdout, v)
}
