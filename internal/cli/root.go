// Package cli owns pyro's command line: one file per verb, human output by
// default and stable JSON with --json, and the single place where errors
// become exit codes.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Exit codes of pyro's own failures. Commands that run a guest command
// (run, workspace exec, vm exec) pass the guest's exit status through and
// use ExitPyroError for their own failures, as docker run does.
const (
	ExitError      = 1   // a pyro command (env, doctor, status...) failed
	ExitUsage      = 2   // bad flags or arguments
	ExitTimeout    = 124 // the guest command ran past --timeout-seconds
	ExitPyroError  = 125 // run/exec: pyro failed before or around the guest command
	ExitInterrupts = 130 // interrupted by SIGINT/SIGTERM
)

// App carries what every command needs. Tests build one with their own
// writers; Main builds one from the process.
type App struct {
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
	Logger *slog.Logger

	JSON     bool
	LogLevel string

	// exitCode lets a command that ran a guest command report its status.
	exitCode int
	// execCommand marks commands whose failures map to ExitPyroError.
	execCommand bool
}

// Main runs pyro with args (without the program name) and returns the exit code.
func Main(args []string) int {
	app := &App{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, args)
}

// Run executes one command line.
func (a *App) Run(ctx context.Context, args []string) int {
	root := a.newRootCmd()
	root.SetArgs(args)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	if a.Stdin != nil {
		root.SetIn(a.Stdin)
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return a.exitCode
	}
	return a.reportError(ctx, err)
}

func (a *App) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pyro",
		Short: "Run commands for coding agents inside real microVMs",
		Long: `pyro runs commands inside real microVMs booted from curated Debian environments,
either one-shot (pyro run) or in persistent workspaces whose /workspace lives across
many commands. The same engine is available as a Go SDK and as an MCP server.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.setupLogger()
			return nil
		},
	}
	root.SetVersionTemplate("pyro {{.Version}}\n")
	root.PersistentFlags().BoolVar(&a.JSON, "json", false, "print structured JSON on stdout")
	root.PersistentFlags().StringVar(&a.LogLevel, "log-level", envOr("PYRO_LOG_LEVEL", "warn"), "log level on stderr: debug, info, warn, error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usage(cmd, err, "") })
	for _, c := range a.commands() {
		root.AddCommand(c)
	}
	strictTree(root)
	return root
}

func (a *App) setupLogger() {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.LogLevel)); err != nil {
		lvl = slog.LevelWarn
	}
	a.Logger = slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (a *App) logger() *slog.Logger {
	if a.Logger == nil {
		a.setupLogger()
	}
	return a.Logger
}

// printJSON writes v as indented JSON on stdout.
func (a *App) printJSON(v any) error {
	enc := json.NewEncoder(a.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ErrorJSON is the shape printed on stdout for a failure under --json.
type ErrorJSON struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody describes a failure.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func (a *App) reportError(ctx context.Context, err error) int {
	code := ExitError
	var ue *usageError
	switch {
	case ctx.Err() != nil && errdefs.ClassOf(err) == errdefs.ErrCancelled:
		code = ExitInterrupts
	case errors.As(err, &ue):
		code = ExitUsage
	case a.execCommand:
		code = ExitPyroError
	}
	if code == ExitInterrupts && !strings.Contains(err.Error(), "interrupted") {
		// The engine has already stopped and deleted what this command
		// started; say so rather than print "context canceled".
		err = errdefs.New(errdefs.ErrCancelled, "", "interrupted: stopped, and removed what this command had started")
	}
	hint := errdefs.HintOf(err)
	if a.JSON {
		_ = a.printJSON(ErrorJSON{Error: ErrorBody{Code: errdefs.Code(err), Message: err.Error(), Hint: hint}})
	}
	fmt.Fprintf(a.Stderr, "pyro: error: %s\n", err)
	if hint != "" {
		fmt.Fprintf(a.Stderr, "pyro: hint: %s\n", hint)
	}
	return code
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
