package cli

import "github.com/spf13/cobra"

// newDoctorCmd is owned by the doctor work (placeholder so the tree builds).
func (a *App) newDoctorCmd() *cobra.Command {
	return &cobra.Command{Use: "doctor", Short: "Check whether this host can run pyro, and how"}
}
