package cli

import (
	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro/internal/hints"
)

// commands lists pyro's top-level verbs, one file each. Their errors'
// hints name the CLI's flags (see package hints).
func (a *App) commands() []*cobra.Command {
	cmds := []*cobra.Command{
		a.newRunCmd(),
		a.newEnvCmd(),
		a.newPrepareCmd(),
		a.newWorkspaceCmd(),
		a.newVMCmd(),
		a.newDoctorCmd(),
		a.newSuperviseCmd(),
		a.newMCPCmd(),
		a.newHostCmd(),
		a.newDemoCmd(),
	}
	for _, c := range cmds {
		cliHints(c)
	}
	return cmds
}

// cliHints makes every RunE under c word its error's hint for the CLI.
func cliHints(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := run(cmd, args); err != nil {
				return hints.Rehint(err, hints.CLI)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		cliHints(sub)
	}
}
