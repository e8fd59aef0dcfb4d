package cli

import (
	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro/internal/engine"
)

// newSuperviseCmd is the hidden verb a per-VM supervisor process runs as.
func (a *App) newSuperviseCmd() *cobra.Command {
	return &cobra.Command{
		Use:    engine.SuperviseCommand + " VM_DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.LogLevel = "info"
			a.setupLogger()
			return engine.RunSupervisor(cmd.Context(), args[0], a.Logger)
		},
	}
}
