package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// newServiceCmd is `pyro workspace service ...`: named long-running
// processes in the guest.
func (a *App) newServiceCmd() *cobra.Command {
	sv := &cobra.Command{
		Use:   "service",
		Short: "Named long-running processes in a workspace: start (until ready), list, status, logs, stop",
		Long: `A service runs in the workspace's guest in its own process group, with its output kept
in a log outside /workspace (the last 1 MiB) that outlives it. 'service start' returns
once the service is ready by its probe (--ready-file, --ready-tcp, --ready-http or
--ready-command; at once without one), or fails with the end of its log. Stop sends
TERM, then KILL after 5 s; a stop or delete of the workspace stops all its services.`,
	}
	sv.AddCommand(a.serviceStartCmd(), a.serviceListCmd(),
		idArgs2(a, "status WORKSPACE NAME", "Show a service: state, pid, times, exit code, restarts", (*pyro.Client).StatusService),
		a.serviceLogsCmd(),
		idArgs2(a, "stop WORKSPACE NAME", "Stop a service: TERM to its process group, KILL after 5 s", (*pyro.Client).StopService))
	return sv
}

func (a *App) serviceStartCmd() *cobra.Command {
	var o pyro.ServiceStartOptions
	var env secretEnvFlag
	var file, httpURL, command string
	var port int
	const usageLine = "pyro workspace service start WORKSPACE NAME [flags] -- COMMAND [ARG...]"
	cmd := &cobra.Command{
		Use: "start WORKSPACE NAME [--cwd DIR] [--ready-file PATH | --ready-tcp PORT | --ready-http URL | --ready-command CMD] " +
			"[--ready-timeout-seconds 30] [--ready-interval-ms 500] [--restart no|on-failure] [--secret-env SECRET[=VAR]]... -- COMMAND [ARG...]",
		Short: "Start a named service and wait until it is ready",
		Example: `  pyro workspace service start 0f3a web --ready-http http://127.0.0.1:8000/ -- python3 -m http.server 8000
  pyro workspace service start 0f3a worker --restart on-failure -- ./worker.sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := func(hint, format string, v ...any) error {
				return usageErr(errdefs.New(errdefs.ErrInvalidArgument, hint, format, v...))
			}
			dash := cmd.ArgsLenAtDash()
			switch {
			case dash < 0:
				return bad("usage: "+usageLine, "missing -- before the command")
			case dash != 2:
				return bad("usage: "+usageLine, "expected 2 arguments before --, got %d", dash)
			case len(args) == dash:
				return bad("give the command after --, e.g. "+usageLine, "empty command")
			}
			ex := commandOptions(args[dash:])
			o.Command, o.Argv = ex.Command, ex.Argv
			n := 0
			for _, r := range []struct {
				set bool
				r   pyro.Readiness
			}{
				{file != "", pyro.Readiness{Type: pyro.ReadyFile, Path: file}},
				{cmd.Flags().Changed("ready-tcp"), pyro.Readiness{Type: pyro.ReadyTCP, Port: port}},
				{httpURL != "", pyro.Readiness{Type: pyro.ReadyHTTP, URL: httpURL}},
				{command != "", pyro.Readiness{Type: pyro.ReadyCommand, Command: command}},
			} {
				if r.set {
					n++
					o.Readiness = &r.r
				}
			}
			if n > 1 {
				return bad("give one of --ready-file, --ready-tcp, --ready-http, --ready-command", "%d readiness probes", n)
			}
			var err error
			if o.SecretEnv, err = env.parse(); err != nil {
				return err
			}
			s, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Service, error) {
				return c.StartService(cmd.Context(), args[0], args[1], o)
			})
			if err != nil {
				return err
			}
			return a.printResult(s)
		},
	}
	cmd.Flags().StringVar(&o.Cwd, "cwd", pyro.WorkspaceRoot, "working directory in the guest")
	cmd.Flags().StringVar(&file, "ready-file", "", "ready when this file exists (relative to --cwd)")
	cmd.Flags().IntVar(&port, "ready-tcp", 0, "ready when 127.0.0.1:PORT in the guest accepts connections")
	cmd.Flags().StringVar(&httpURL, "ready-http", "", "ready when a GET of this http:// URL answers 2xx or 3xx")
	cmd.Flags().StringVar(&command, "ready-command", "", "ready when this shell command exits 0")
	cmd.Flags().IntVar(&o.ReadyTimeoutSeconds, "ready-timeout-seconds", pyro.DefaultReadyTimeoutSeconds, "fail (and stop it) if not ready by then")
	cmd.Flags().IntVar(&o.ReadyIntervalMs, "ready-interval-ms", pyro.DefaultReadyIntervalMs, "time between readiness probes")
	cmd.Flags().StringVar(&o.Restart, "restart", pyro.RestartNo, "no, or on-failure: start it again (with a backoff) when it exits non-zero")
	env.register(cmd)
	return cmd
}

func (a *App) serviceListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list WORKSPACE",
		Short: "List a workspace's services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.ServiceList, error) { return c.ListServices(cmd.Context(), args[0]) })
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			if l.Note != "" {
				fmt.Fprintf(a.Stderr, "[service] %s\n", l.Note)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tEXIT_CODE\tPID\tRESTARTS\tCOMMAND")
			for _, s := range l.Services {
				code := "-"
				if s.ExitCode != nil {
					code = fmt.Sprint(*s.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.State, code, s.Pid, s.RestartCount, strings.Join(s.Command, " "))
			}
			return tw.Flush()
		},
	}
}

func (a *App) serviceLogsCmd() *cobra.Command {
	var o pyro.ServiceLogsOptions
	cmd := &cobra.Command{
		Use:   "logs WORKSPACE NAME [--tail-lines N | --all]",
		Short: "Print a service's log (stdout and stderr together)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("tail-lines") && o.All {
				return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give --tail-lines N or --all", "both --tail-lines and --all"))
			}
			if o.All {
				o.TailLines = 0
			}
			l, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.ServiceLogs, error) {
				return c.LogsService(cmd.Context(), args[0], args[1], o)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			if l.Note != "" {
				fmt.Fprintf(a.Stderr, "[service] %s\n", l.Note)
			}
			io.WriteString(a.Stdout, l.Output)
			return nil
		},
	}
	cmd.Flags().IntVar(&o.TailLines, "tail-lines", pyro.DefaultServiceTailLines, "print the last N lines")
	cmd.Flags().BoolVar(&o.All, "all", false, "print all that is kept (the last 1 MiB)")
	return cmd
}
