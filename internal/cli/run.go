package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
)

func (a *App) newRunCmd() *cobra.Command {
	var f createFlags
	var timeout int
	const usage = "pyro run ENVIRONMENT [flags] -- COMMAND [ARG...]"
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
			before, ex, err := splitCommand(cmd, args, 1, usage)
			if err != nil {
				return err
			}
			if ex.TimeoutSeconds, err = timeoutOption(timeout); err != nil {
				return err
			}
			opts, err := f.options(before[0])
			if err != nil {
				return err
			}
			c, err := a.clientFor(f.backend)
			if err != nil {
				return err
			}
			ro := pyro.RunOptions{Environment: opts.Environment, VCPUCount: opts.VCPUCount, MemMiB: opts.MemMiB,
				TTLSeconds: opts.TTLSeconds, Network: opts.Network, AllowHostCompat: opts.AllowHostCompat,
				Command: ex.Command, Argv: ex.Argv, TimeoutSeconds: ex.TimeoutSeconds}
			if !a.JSON {
				ro.Stdout, ro.Stderr = a.Stdout, a.Stderr
			}
			res, err := c.RunInVM(cmd.Context(), ro)
			if err != nil {
				return err
			}
			return a.finishExec("run", res, &res.ExecResult, fmt.Sprintf("environment=%s execution_mode=%s backend=%s boot_ms=%d ",
				res.Environment, res.ExecutionMode, res.Backend, res.BootMs))
		},
	}
	f.register(cmd, pyro.DefaultVMTTLSeconds)
	cmd.Flags().IntVar(&timeout, "timeout-seconds", pyro.DefaultTimeoutSeconds, "kill the command (exit 124) after this many seconds")
	return cmd
}
