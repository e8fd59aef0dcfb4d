package cli

import "github.com/spf13/cobra"

// newEnvCmd is owned by the catalog work (placeholder so the tree builds).
func (a *App) newEnvCmd() *cobra.Command {
	return &cobra.Command{Use: "env", Short: "List, pull, inspect and prune environments"}
}
