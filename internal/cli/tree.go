package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// NewRootCommand returns pyro's whole command tree without running it, for
// code that inspects the CLI: the docs check parses every documented
// `pyro ...` line against it. Its commands print nowhere.
func NewRootCommand() *cobra.Command {
	a := &App{Stdout: io.Discard, Stderr: io.Discard}
	root := a.newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	return root
}
