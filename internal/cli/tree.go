package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro/internal/errdefs"
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

// usageError is a command line pyro cannot make sense of (an unknown
// command, a stray or missing argument, a bad flag): exit status 2. It is
// recognised by its type, whatever its words.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usage makes err a usage error, classed invalid_argument, with hint (or a
// pointer to cmd's help when hint is "").
func usage(cmd *cobra.Command, err error, hint string) error {
	if hint == "" {
		hint = fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())
	}
	return &usageError{errdefs.Wrap(errdefs.ErrInvalidArgument, err, hint, "bad command line")}
}

// usageErr marks an error a command found in its own arguments or flags
// (after cobra parsed them) as a usage error.
func usageErr(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err}
}

// strictTree makes every command of the tree, present and future, refuse
// what it does not understand: a command group (a command with
// subcommands) takes no positional arguments, so an unknown subcommand or a
// stray word is a usage error with a "did you mean" suggestion rather than
// its help and exit 0; a group with nothing to run prints its help; and
// every argument check returns a usage error.
func strictTree(c *cobra.Command) {
	if c.HasSubCommands() {
		c.Args = unknownSubcommand
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2
		}
		if c.Run == nil && c.RunE == nil {
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	} else if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usage(cmd, err, "")
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		strictTree(sub)
	}
}

// unknownSubcommand is the argument check of every command group.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	var names []string
	for _, s := range cmd.SuggestionsFor(args[0]) {
		names = append(names, "'"+cmd.CommandPath()+" "+s+"'")
	}
	hint := fmt.Sprintf("run '%s --help' for its commands", cmd.CommandPath())
	if len(names) > 0 {
		hint = "did you mean " + strings.Join(names, " or ") + "? " + hint
	}
	return usage(cmd, err, hint)
}
