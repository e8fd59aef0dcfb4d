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

// clientOptions are what every command asks of the SDK, the CLI's one path
// to the engine.
type clientOptions struct {
	backend  string // --backend; "" means $PYRO_BACKEND, else auto
	registry string // --registry of pyro env
	quiet    bool   // no progress at all (pyro env list, inspect...)
	// streams, when set, is a command whose output goes to the terminal
	// (unless the result is printed as JSON), after the progress line.
	streams *pyro.ExecOptions
}

// call opens the SDK and runs f with the command's progress shown on
// stderr, then clears it: whatever f returns is printed on a clean screen.
func call[T any](a *App, o clientOptions, f func(*pyro.Client) (T, error)) (T, error) {
	var zero T
	v := a.newProgressView()
	opts := &pyro.Options{Logger: a.logger(), Backend: o.backend, Registry: o.registry}
	if !o.quiet {
		opts.Progress = v.show
	}
	c, err := pyro.New(opts)
	if err != nil {
		return zero, err
	}
	if o.streams != nil && !a.JSON {
		o.streams.Stdout, o.streams.Stderr = v.output(a.Stdout), v.output(a.Stderr)
	}
	defer v.finish()
	return f(c)
}

// createFlags are the VM shape flags shared by run, vm create and workspace create.
type createFlags struct {
	shape   pyro.Shape
	backend string
	cold    bool
}

func (f *createFlags) register(cmd *cobra.Command, defaultTTL int) {
	cmd.Flags().IntVar(&f.shape.VCPUCount, "vcpu-count", pyro.DefaultVCPUCount, "virtual CPUs")
	cmd.Flags().IntVar(&f.shape.MemMiB, "mem-mib", pyro.DefaultMemMiB, "guest memory in MiB")
	cmd.Flags().IntVar(&f.shape.TTLSeconds, "ttl-seconds", defaultTTL, "seconds before the VM is stopped and reaped")
	cmd.Flags().BoolVar(&f.shape.Network, "network", false, "give the guest outbound network access: the shorthand for --network-policy egress")
	registerNetworkFlags(cmd, &f.shape.NetworkPolicy, &f.shape.Allow, &f.shape.AllowPublish)
	cmd.Flags().BoolVar(&f.shape.AllowHostCompat, "allow-host-compat", false, "if no guest can boot, run on the host in a private directory WITHOUT isolation")
	def := os.Getenv("PYRO_BACKEND")
	if def == "" {
		def = "auto"
	}
	cmd.Flags().StringVar(&f.backend, "backend", def, "VMM to boot with: auto, firecracker, qemu or host_compat (default from $PYRO_BACKEND); later starts keep it")
	cmd.Flags().BoolVar(&f.cold, "cold", false, "boot the guest instead of restoring it from a warm-start template")
}

// checked returns the shape, refusing what the engine would take as "the
// default": on the command line 0 is a mistake.
func (f *createFlags) checked() (pyro.Shape, error) {
	for _, v := range []struct {
		name string
		val  int
	}{{"--vcpu-count", f.shape.VCPUCount}, {"--mem-mib", f.shape.MemMiB}, {"--ttl-seconds", f.shape.TTLSeconds}} {
		if v.val <= 0 {
			return pyro.Shape{}, errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "%s %d is out of range", v.name, v.val)
		}
	}
	return f.shape, nil
}

// execFlags parse the command of an exec-style verb:
// `VERB ARG... [--timeout-seconds N] -- COMMAND [ARG...]`.
type execFlags struct {
	timeout int
	usage   string
	before  int // arguments before --
}

func (f *execFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.timeout, "timeout-seconds", pyro.DefaultTimeoutSeconds, "kill the command (exit 124) after this many seconds")
}

// parse separates the arguments before -- from the command after it.
func (f *execFlags) parse(cmd *cobra.Command, args []string) ([]string, pyro.ExecOptions, error) {
	bad := func(hint, format string, v ...any) ([]string, pyro.ExecOptions, error) {
		return nil, pyro.ExecOptions{}, errdefs.New(errdefs.ErrInvalidArgument, hint, format, v...)
	}
	dash := cmd.ArgsLenAtDash()
	switch {
	case dash < 0:
		return bad("usage: "+f.usage, "missing -- before the command")
	case dash != f.before:
		return bad("usage: "+f.usage, "expected %d argument(s) before --, got %d", f.before, dash)
	case len(args) == dash:
		return bad("give the command after --, e.g. "+f.usage, "empty command")
	case f.timeout <= 0:
		return bad("give a positive number of seconds", "--timeout-seconds %d is out of range", f.timeout)
	}
	ex := commandOptions(args[dash:])
	ex.TimeoutSeconds = f.timeout
	return args[:dash], ex, nil
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

// bootTest is `pyro doctor --boot-test`: boot the default environment and
// run `true` in it, through the SDK like every other command.
func (a *App) bootTest(ctx context.Context) error {
	res, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.RunResult, error) {
		return c.RunInVM(ctx, pyro.RunOptions{Environment: pyro.DefaultEnvironment, Shape: pyro.Shape{MemMiB: 256}, Argv: []string{"true"}})
	})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("`true` exited %d in the guest", res.ExitCode)
	}
	return nil
}

// execRun is what an exec-style verb does once its command line is parsed:
// run the command (streaming to ex.Stdout/ex.Stderr when set) and return
// the result to print, its command part, and the summary line's fields.
type execRun func(ctx context.Context, c *pyro.Client, id string, ex pyro.ExecOptions) (any, *pyro.ExecResult, string, error)

// idExecCmd builds `VERB exec ID [--timeout-seconds N] -- COMMAND...`, whose
// exit status is the guest command's.
func (a *App) idExecCmd(idName, short, prefix string, run execRun) *cobra.Command {
	f := execFlags{before: 1, usage: fmt.Sprintf("pyro %s exec %s [--timeout-seconds N] -- COMMAND [ARG...]", strings.Fields(prefix)[0], idName)}
	cmd := &cobra.Command{
		Use:   "exec " + idName + " -- COMMAND [ARG...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.execCommand = true
			before, ex, err := f.parse(cmd, args)
			if err != nil {
				return err
			}
			type out struct {
				res   any
				er    *pyro.ExecResult
				extra string
			}
			o, err := call(a, clientOptions{streams: &ex}, func(c *pyro.Client) (out, error) {
				res, er, extra, err := run(cmd.Context(), c, before[0], ex)
				return out{res, er, extra}, err
			})
			if err != nil {
				return err
			}
			return a.finishExec(prefix, o.res, o.er, o.extra)
		},
	}
	f.register(cmd)
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

// printResult prints a result: JSON with --json, else aligned fields.
func (a *App) printResult(v any) error {
	if a.JSON {
		return a.printJSON(v)
	}
	return printFields(a.Stdout, v)
}
