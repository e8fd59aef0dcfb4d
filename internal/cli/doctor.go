package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/doctor"
)

func (a *App) newDoctorCmd() *cobra.Command {
	var bootTest bool
	var env string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this host can run pyro, and how",
		Long: `doctor checks how this host can run a guest (QEMU with KVM, QEMU with TCG software
emulation, Firecracker, host-compat), which backend pyro will use, the KVM device,
the tools pyro needs and the Debian packages that provide them, the environment
cache and the installed environments. It exits 1 when no backend can boot an
isolated guest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := doctor.Options{RunBootTest: bootTest, BootTest: a.bootTest}
			if env != "" {
				opts.Templates = func(ctx context.Context) (*pyro.EnvironmentTemplates, error) {
					return call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.EnvironmentTemplates, error) {
						return c.EnvironmentTemplates(ctx, env)
					})
				}
			}
			r := doctor.Run(cmd.Context(), opts)
			if a.JSON {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else {
				r.WriteText(a.Stdout)
			}
			if !r.OK {
				a.exitCode = ExitError
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&bootTest, "boot-test", false, "also boot a real guest end to end with the selected backend")
	cmd.Flags().StringVar(&env, "environment", "", "also say whether ENVIRONMENT starts warm (from a template), cold or from a stale template")
	return cmd
}
