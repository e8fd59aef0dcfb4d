package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
)

func (a *App) newRunCmd() *cobra.Command {
	var f createFlags
	e := execFlags{before: 1, usage: "pyro run ENVIRONMENT [flags] -- COMMAND [ARG...]"}
	cmd := &cobra.Command{
		Use:   "run ENVIRONMENT -- COMMAND [ARG...]",
		Short: "Boot a fresh microVM, run one command in it, and clean up",
		Long: `Boot a fresh microVM from ENVIRONMENT, run COMMAND inside it, print its output and
delete the VM. pyro's exit status is the command's (124 when it timed out; 125 when
pyro itself failed). A single COMMAND argument containing shell syntax runs with /bin/sh -c.`,
		Example: `  pyro run debian:12 -- git --version
  pyro run debian:12 --network -- curl -sI https://example.com
  pyro run debian:12-build --timeout-seconds 300 -- "cc --version && python3 --version"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.execCommand = true
			before, ex, err := e.parse(cmd, args)
			if err != nil {
				return err
			}
			shape, err := f.checked()
			if err != nil {
				return err
			}
			res, err := call(a, clientOptions{backend: f.backend, streams: &ex}, func(c *pyro.Client) (*pyro.RunResult, error) {
				return c.RunInVM(cmd.Context(), pyro.RunOptions{Environment: before[0], Shape: shape, Cold: f.cold,
					Command: ex.Command, Argv: ex.Argv, TimeoutSeconds: ex.TimeoutSeconds, Stdout: ex.Stdout, Stderr: ex.Stderr})
			})
			if err != nil {
				return err
			}
			return a.finishExec("run", res, &res.ExecResult, fmt.Sprintf("environment=%s execution_mode=%s backend=%s start=%s boot_ms=%d ",
				res.Environment, res.ExecutionMode, res.Backend, res.Start, res.BootMs))
		},
	}
	f.register(cmd, pyro.DefaultVMTTLSeconds)
	e.register(cmd)
	return cmd
}
