package cli

import (
	"context"
	"fmt"

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
	vm.AddCommand(a.vmCreateCmd(),
		idCmd(a, "start VM_ID", "Boot a created or stopped VM", (*pyro.Client).StartVM, a.printResult),
		a.vmExecCmd(),
		idCmd(a, "stop VM_ID", "Power a VM off (its disk stays until delete)", (*pyro.Client).StopVM, a.printResult),
		idCmd(a, "delete VM_ID", "Stop a VM and remove its disk and state", (*pyro.Client).DeleteVM, a.printResult),
		idCmd(a, "status VM_ID", "Show a VM's state and whether its process is alive", (*pyro.Client).StatusVM, a.printResult),
		idCmd(a, "network-info VM_ID", "Show a VM's network configuration", (*pyro.Client).NetworkInfoVM, a.printResult),
		listCmd(a, vmTable), a.vmReapCmd())
	return vm
}

// idCmd builds `VERB ID`: one call on one VM or workspace, its result printed.
func idCmd[T any](a *App, use, short string, do func(*pyro.Client, context.Context, string) (T, error), print func(any) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := call(a, clientOptions{}, func(c *pyro.Client) (T, error) { return do(c, cmd.Context(), args[0]) })
			if err != nil {
				return err
			}
			return print(v)
		},
	}
}

func (a *App) vmCreateCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create ENVIRONMENT",
		Short: "Create a VM (pulling its environment if needed) without booting it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shape, err := f.checked()
			if err != nil {
				return err
			}
			vm, err := call(a, clientOptions{backend: f.backend}, func(c *pyro.Client) (*pyro.VM, error) {
				return c.CreateVM(cmd.Context(), pyro.CreateVMOptions{Environment: args[0], Shape: shape, Cold: f.cold})
			})
			if err != nil {
				return err
			}
			return a.printResult(vm)
		},
	}
	f.register(cmd, pyro.DefaultVMTTLSeconds)
	return cmd
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

func (a *App) vmReapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reap",
		Short: "Stop and delete every VM past its TTL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.ReapResult, error) { return c.ReapExpired(cmd.Context()) })
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
