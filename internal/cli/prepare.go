package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func (a *App) newPrepareCmd() *cobra.Command {
	var f createFlags
	var diskGiB int
	cmd := &cobra.Command{
		Use:   "prepare [ENVIRONMENT...] [--network] [--json]",
		Args:  cobra.ArbitraryArgs,
		Short: "Build the warm-start templates that make new VMs and workspaces start in a fraction of a boot",
		Long: `prepare pulls each ENVIRONMENT (default: ` + pyro.DefaultEnvironment + `) if needed and builds its warm-start
templates: a guest booted to "agent ready", quiesced and saved, that 'pyro run' and
'pyro workspace create' of the same environment and shape restore instead of booting.
One template serves runs (and 'vm create'), one serves workspaces. A template that is
already usable is kept. The first run or workspace create without one saves it on its
way, so prepare is optional; it moves that cost out of the first command.`,
		Example: `  pyro prepare
  pyro prepare debian:12 debian:12-build --network`,
		RunE: func(cmd *cobra.Command, args []string) error {
			shape, err := f.checked()
			if err != nil {
				return err
			}
			if diskGiB <= 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give a positive number of GiB", "--disk-gib %d is out of range", diskGiB)
			}
			res, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.PrepareResult, error) {
				return c.Prepare(cmd.Context(), pyro.PrepareOptions{Environments: args, Shape: shape, DiskGiB: diskGiB})
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			for _, t := range res.Templates {
				what := "kept"
				if t.Built {
					what = fmt.Sprintf("built in %.1f s", float64(t.BuildMs)/1000)
				}
				fmt.Fprintf(a.Stdout, "%s %-9s %s: %s (memory %s, state %s, root %s)\n", t.Environment, t.Kind, t.Status, what,
					api.HumanBytes(t.MemoryBytes), api.HumanBytes(t.StateBytes), api.HumanBytes(t.RootBytes))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&f.shape.VCPUCount, "vcpu-count", pyro.DefaultVCPUCount, "virtual CPUs of the machines the templates serve")
	cmd.Flags().IntVar(&f.shape.MemMiB, "mem-mib", pyro.DefaultMemMiB, "guest memory in MiB of the machines the templates serve")
	cmd.Flags().BoolVar(&f.shape.Network, "network", false, "templates for machines with a network (--network)")
	cmd.Flags().IntVar(&diskGiB, "disk-gib", pyro.DefaultDiskGiB, "the workspace template's /workspace disk size in GiB")
	f.shape.TTLSeconds = 1
	return cmd
}
