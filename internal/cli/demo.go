package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/demo"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// newDemoCmd wires `pyro demo` and `pyro demo ollama`. Results go to
// stdout (the step lines and the total; the ollama summary line), progress
// and logs to stderr (environment pulls; the ollama conversation).
func (a *App) newDemoCmd() *cobra.Command {
	var network bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "A guided tour: a one-shot VM, then a seeded workspace (exec, logs, delete)",
		Long: `Show pyro working end to end, timing each step: boot a fresh debian:12 VM and run
git --version in it; create a workspace seeded from a small temporary directory; run a
script from the seed in it; read its logs; delete it. --network gives the workspace
outbound network and adds a step proving egress (curl -sI of the Debian mirror your apt uses).

Each finished step prints one line on stdout, then a line with the total; with --json,
stdout gets one object with every step instead. The exit status is 0 when every step
succeeded, 1 when one failed (its line says why) or pyro itself failed.

'pyro demo ollama' lets a local model drive the same tools; see its help.`,
		Example: `  pyro demo
  pyro demo --network --json
  pyro demo ollama --model qwen2.5:3b`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pr := a.newProgressView()
			c, err := pyro.New(&pyro.Options{Logger: a.logger(), Progress: pullsOnly(pr.show)})
			if err != nil {
				return err
			}
			rep, err := demo.Guided(cmd.Context(), c, demo.GuidedOptions{Network: network, OnStep: func(s demo.Step, total int) {
				pr.finish()
				if !a.JSON {
					fmt.Fprintf(a.Stdout, "[demo] step %d/%d %s: %s (%s)\n", s.Number, total, s.Name, s.Detail, demo.Seconds(s.DurationMs))
				}
			}})
			pr.finish()
			if err != nil {
				return err
			}
			if !rep.OK {
				a.exitCode = ExitError
			}
			if a.JSON {
				return a.printJSON(rep)
			}
			status := fmt.Sprintf("all %d steps ok", rep.StepCount)
			if !rep.OK {
				var failed []string
				for _, s := range rep.Steps {
					if !s.OK {
						failed = append(failed, s.Name)
					}
				}
				status = fmt.Sprintf("%d/%d steps ok, FAILED: %s", rep.StepsOK, rep.StepCount, strings.Join(failed, ", "))
			}
			fmt.Fprintf(a.Stdout, "[demo] total %s: %s\n", demo.Seconds(rep.TotalMs), status)
			return nil
		},
	}
	cmd.Flags().BoolVar(&network, "network", false, "give the workspace outbound network and prove egress with curl")
	cmd.AddCommand(a.newDemoOllamaCmd())
	return cmd
}

func (a *App) newDemoOllamaCmd() *cobra.Command {
	o := demo.OllamaOptions{}
	var tools string
	cmd := &cobra.Command{
		Use:   "ollama",
		Short: "Let a local model served by Ollama run a command in a microVM through pyro's tools",
		Long: `Give a model served by Ollama pyro's MCP tools (by default only vm_run) through Ollama's
OpenAI-compatible chat-completions API, and ask it to run git --version in a VM and
report the version. The tools' names, descriptions and input schemas come from pyro's
own MCP server, running in this process; every tool call goes through it.

Every step logs a line on stderr: each request to the model, each tool call with its
arguments, each tool result (exit code, output). The run ends with one summary line on
stdout:

  [summary] model=M steps=N tool_calls=N exit_code=N duration_ms=N success=true|false

success=true needs the model to call a tool, the last guest command to exit 0 and the
model to answer afterwards within --max-steps; the exit status is then 0, else 1.
With --json, stdout gets one object instead and the summary line goes to stderr.

The model must support tool calling (qwen2.5, llama3.1/3.2, mistral...): pull it first
with 'ollama pull MODEL'.`,
		Example: `  ollama pull qwen2.5:3b && pyro demo ollama
  pyro demo ollama --model llama3.2:3b --environment debian:12-build
  pyro demo ollama --base-url http://gpu-box:11434/v1 --tools all --max-steps 12`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.MaxSteps <= 0 {
				return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "bad command line: --max-steps %d is out of range", o.MaxSteps))
			}
			o.Tools = nil
			for _, t := range strings.Split(tools, ",") {
				if t = strings.TrimSpace(t); t != "" {
					o.Tools = append(o.Tools, t)
				}
			}
			pr := a.newProgressView()
			c, err := pyro.New(&pyro.Options{Logger: a.logger(), Progress: pullsOnly(pr.show)})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// The tools run in pyro's own MCP server, in this process. The
			// client is closed last: Close waits for calls in flight, so a
			// VM of a call cancelled by Ctrl-C is deleted before pyro exits.
			defer func() {
				wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				c.Close(wctx)
			}()
			ct, st := mcp.NewInMemoryTransports()
			ss, err := c.CreateServer().Connect(ctx, st, nil)
			if err != nil {
				return fmt.Errorf("starting pyro's MCP server: %w", err)
			}
			defer ss.Close()
			session, err := mcp.NewClient(&mcp.Implementation{Name: "pyro-demo-ollama", Version: version.Version}, nil).Connect(ctx, ct, nil)
			if err != nil {
				return fmt.Errorf("connecting to pyro's MCP server: %w", err)
			}
			defer session.Close()
			o.Log = func(line string) {
				pr.finish()
				fmt.Fprintln(a.Stderr, line)
			}
			rep, err := demo.Ollama(ctx, session, o)
			pr.finish()
			if err != nil {
				return err
			}
			if !rep.Success {
				a.exitCode = ExitError
			}
			if a.JSON {
				fmt.Fprintln(a.Stderr, rep.SummaryLine())
				return a.printJSON(rep)
			}
			fmt.Fprintln(a.Stdout, rep.SummaryLine())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BaseURL, "base-url", demo.DefaultOllamaURL, "Ollama's OpenAI-compatible API root")
	f.StringVar(&o.Model, "model", demo.DefaultModel, "model to use; it must support tool calling")
	f.StringVar(&o.Environment, "environment", pyro.DefaultEnvironment, "environment the model is asked to run the command in")
	f.IntVar(&o.MaxSteps, "max-steps", demo.DefaultMaxSteps, "chat-completions requests at most")
	f.StringVar(&tools, "tools", strings.Join(demo.DefaultTools, ","), "comma-separated MCP tools offered to the model, or all")
	return cmd
}

// pullsOnly passes on the progress of environments actually being fetched
// or built: a demo need not say that the cache was checked, and its own
// step lines say what the VMs and workspaces do.
func pullsOnly(f func(pyro.Progress)) func(pyro.Progress) {
	return func(p pyro.Progress) {
		if p.Op != "pull" || p.Phase == "resolve" || p.Phase == "verify" || (p.Phase == "done" && p.Source == "cache") {
			return
		}
		f(p)
	}
}
