package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// client opens the SDK (the CLI's one path to the engine), with pull
// progress going to stderr.
func (a *App) client() (*pyro.Client, error) {
	return a.clientFor("")
}

// clientFor is client with a backend choice (--backend); "" means
// $PYRO_BACKEND, else auto.
func (a *App) clientFor(backend string) (*pyro.Client, error) {
	return pyro.New(&pyro.Options{Logger: a.logger(), Progress: a.newProgressPrinter().print, Backend: backend})
}

// createFlags are the VM shape flags shared by run, vm create and workspace create.
type createFlags struct {
	vcpus, mem, ttl int
	network, hostOK bool
	backend         string
}

func (f *createFlags) register(cmd *cobra.Command, defaultTTL int) {
	cmd.Flags().IntVar(&f.vcpus, "vcpu-count", pyro.DefaultVCPUCount, "virtual CPUs")
	cmd.Flags().IntVar(&f.mem, "mem-mib", pyro.DefaultMemMiB, "guest memory in MiB")
	cmd.Flags().IntVar(&f.ttl, "ttl-seconds", defaultTTL, "seconds before the VM is stopped and reaped")
	cmd.Flags().BoolVar(&f.network, "network", false, "give the guest outbound network access (never the host's loopback; services on the host's other addresses ARE reachable)")
	cmd.Flags().BoolVar(&f.hostOK, "allow-host-compat", false, "if no guest can boot, run on the host in a private directory WITHOUT isolation")
	def := os.Getenv("PYRO_BACKEND")
	if def == "" {
		def = "auto"
	}
	cmd.Flags().StringVar(&f.backend, "backend", def, "VMM to boot with: auto, firecracker, qemu or host_compat (default from $PYRO_BACKEND); later starts keep it")
}

func (f *createFlags) options(env string) (pyro.CreateVMOptions, error) {
	// The engine reads 0 as "the default"; on the command line 0 is a mistake.
	for _, v := range []struct {
		name string
		val  int
	}{{"--vcpu-count", f.vcpus}, {"--mem-mib", f.mem}, {"--ttl-seconds", f.ttl}} {
		if v.val <= 0 {
			return pyro.CreateVMOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "%s %d is out of range", v.name, v.val)
		}
	}
	return pyro.CreateVMOptions{Environment: env, VCPUCount: f.vcpus, MemMiB: f.mem, TTLSeconds: f.ttl, Network: f.network, AllowHostCompat: f.hostOK}, nil
}

func timeoutOption(t int) (int, error) {
	if t <= 0 {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "give a positive number of seconds", "--timeout-seconds %d is out of range", t)
	}
	return t, nil
}

// splitCommand separates `ENV -- CMD...` style arguments: before is what
// precedes --, the command what follows it.
func splitCommand(cmd *cobra.Command, args []string, before int, usage string) ([]string, pyro.ExecOptions, error) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 {
		return nil, pyro.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "usage: "+usage, "missing -- before the command")
	}
	if dash != before {
		return nil, pyro.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "usage: "+usage, "expected %d argument(s) before --, got %d", before, dash)
	}
	if len(args) == dash {
		return nil, pyro.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, "give the command after --, e.g. "+usage, "empty command")
	}
	return args[:dash], commandOptions(args[dash:]), nil
}

// commandOptions runs a single argument that looks like shell through
// /bin/sh -c ("make && make test"); anything else is an argv.
func commandOptions(argv []string) pyro.ExecOptions {
	if len(argv) == 1 && strings.ContainsAny(argv[0], " \t\n;&|<>()$`\\\"'*?[]{}~") {
		return pyro.ExecOptions{Command: argv[0]}
	}
	return pyro.ExecOptions{Argv: argv}
}

// exitFor maps a finished guest command to pyro's exit status.
func exitFor(r *pyro.ExecResult) int {
	if r.TimedOut {
		return ExitTimeout
	}
	return r.ExitCode
}

// printExecSummary writes the one-line human summary of a command on stderr.
func (a *App) printExecSummary(prefix string, r *pyro.ExecResult, extra string) {
	if r.TimedOut {
		fmt.Fprintf(a.Stderr, "[%s] %s\n", prefix, r.Message)
	}
	trunc := ""
	if r.StdoutTruncated || r.StderrTruncated {
		trunc = " output_truncated=true"
	}
	fmt.Fprintf(a.Stderr, "[%s] %sexit_code=%d duration_ms=%d%s\n", prefix, extra, r.ExitCode, r.DurationMs, trunc)
}

func init() {
	// pyro doctor --boot-test boots the default environment and runs `true`.
	DoctorBootTest = func(ctx context.Context) error {
		c, err := pyro.New(nil)
		if err != nil {
			return err
		}
		res, err := c.RunInVM(ctx, pyro.RunOptions{Environment: pyro.DefaultEnvironment, MemMiB: 256, Argv: []string{"true"}})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("`true` exited %d in the guest", res.ExitCode)
		}
		return nil
	}
}

// execRun is what an exec-style verb does once its command line is parsed:
// run the command (streaming to ex.Stdout/ex.Stderr when set) and return
// the result to print, its command part, and the summary line's fields.
type execRun func(ctx context.Context, c *pyro.Client, id string, ex pyro.ExecOptions) (any, *pyro.ExecResult, string, error)

// idExecCmd builds `VERB exec ID [--timeout-seconds N] -- COMMAND...`, whose
// exit status is the guest command's.
func (a *App) idExecCmd(idName, short, prefix string, run execRun) *cobra.Command {
	var timeout int
	usage := fmt.Sprintf("pyro %s exec %s [--timeout-seconds N] -- COMMAND [ARG...]", strings.Fields(prefix)[0], idName)
	cmd := &cobra.Command{
		Use:   "exec " + idName + " -- COMMAND [ARG...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.execCommand = true
			before, ex, err := splitCommand(cmd, args, 1, usage)
			if err != nil {
				return err
			}
			if ex.TimeoutSeconds, err = timeoutOption(timeout); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if !a.JSON {
				ex.Stdout, ex.Stderr = a.Stdout, a.Stderr
			}
			res, er, extra, err := run(cmd.Context(), c, before[0], ex)
			if err != nil {
				return err
			}
			return a.finishExec(prefix, res, er, extra)
		},
	}
	cmd.Flags().IntVar(&timeout, "timeout-seconds", pyro.DefaultTimeoutSeconds, "kill the command (exit 124) after this many seconds")
	return cmd
}

// finishExec sets pyro's exit status from a guest command and prints the
// result: the JSON object, or the one-line summary on stderr.
func (a *App) finishExec(prefix string, res any, er *pyro.ExecResult, extra string) error {
	a.exitCode = exitFor(er)
	if a.JSON {
		return a.printJSON(res)
	}
	a.printExecSummary(prefix, er, extra)
	return nil
}
