package cli

import "github.com/spf13/cobra"

// commands lists pyro's top-level verbs, one file each.
func (a *App) commands() []*cobra.Command {
	return []*cobra.Command{
		a.newRunCmd(),
		a.newEnvCmd(),
		a.newWorkspaceCmd(),
		a.newVMCmd(),
		a.newDoctorCmd(),
		a.newSuperviseCmd(),
		a.newMCPCmd(),
		a.newDemoCmd(),
	}
}
