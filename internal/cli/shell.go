package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// detachKey ends an attach and leaves the shell running: Ctrl-], as in
// telnet and virsh console.
const detachKey = 0x1d

// newShellCmd is `pyro workspace shell ...`: interactive shells that live
// in the guest.
func (a *App) newShellCmd() *cobra.Command {
	sh := &cobra.Command{
		Use:   "shell",
		Short: "Interactive shells that live in a workspace: open, write, read, signal, close, list, attach",
		Long: `A shell is a program on a pseudo-terminal in the workspace's guest (bash, or sh). It
lives there between commands, whatever happens to the pyro process that opened it,
until 'shell close', its own exit (the exit code is kept), or the workspace's stop or
delete. Its output is kept (the last 1 MiB) and read by cursor, a byte offset in the
raw output: each read prints the next cursor, and readers never take output from
each other. 'shell attach' connects your terminal to it.`,
	}
	sh.AddCommand(a.shellOpenCmd(), a.shellWriteCmd(), a.shellReadCmd(),
		a.shellSignalCmd(),
		idArgs2(a, "close WORKSPACE SHELL_ID", "Hang a shell up and forget it", (*pyro.Client).CloseShell),
		a.shellListCmd(), a.shellAttachCmd())
	return sh
}

func (a *App) shellOpenCmd() *cobra.Command {
	var o pyro.ShellOpenOptions
	var env secretEnvFlag
	var idOnly bool
	cmd := &cobra.Command{
		Use:     "open WORKSPACE [--cwd DIR] [--cols N] [--rows N] [--secret-env SECRET[=VAR]]... [--id-only]",
		Short:   "Open a shell in the workspace (booting it if needed) and print its shell_id",
		Example: `  SHELL=$(pyro workspace shell open 0f3a --id-only)`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.SecretEnv, err = env.parse(); err != nil {
				return err
			}
			s, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Shell, error) { return c.OpenShell(cmd.Context(), args[0], o) })
			if err != nil {
				return err
			}
			if idOnly && !a.JSON {
				fmt.Fprintln(a.Stdout, s.ShellID)
				return nil
			}
			return a.printResult(s)
		},
	}
	cmd.Flags().StringVar(&o.Cwd, "cwd", pyro.WorkspaceRoot, "working directory in the guest")
	cmd.Flags().IntVar(&o.Cols, "cols", 120, "terminal columns")
	cmd.Flags().IntVar(&o.Rows, "rows", 30, "terminal rows")
	env.register(cmd)
	cmd.Flags().BoolVar(&idOnly, "id-only", false, "print only the shell_id")
	return cmd
}

func (a *App) shellWriteCmd() *cobra.Command {
	var o pyro.ShellWriteOptions
	cmd := &cobra.Command{
		Use:     "write WORKSPACE SHELL_ID --input TEXT [--no-newline]",
		Short:   "Type input into a shell (a newline is added unless --no-newline)",
		Example: `  pyro workspace shell write 0f3a $SHELL --input 'make test'`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("input") {
				return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give --input TEXT (--input '' presses Enter)", "no input"))
			}
			r, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.ShellWriteResult, error) {
				return c.WriteShell(cmd.Context(), args[0], args[1], o)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.Stderr, "[shell] wrote %d bytes to shell %s\n", r.Written, r.ShellID)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Input, "input", "", "the text to type")
	cmd.Flags().BoolVar(&o.NoNewline, "no-newline", false, "do not press Enter after it")
	return cmd
}

func (a *App) shellReadCmd() *cobra.Command {
	var o pyro.ShellReadOptions
	cmd := &cobra.Command{
		Use:   "read WORKSPACE SHELL_ID [--cursor N] [--max-chars N] [--plain] [--wait-for-idle-ms N]",
		Short: "Print a shell's output from a cursor; the next cursor goes to stderr",
		Example: `  pyro workspace shell read 0f3a $SHELL --plain --wait-for-idle-ms 500
  pyro workspace shell read 0f3a $SHELL --cursor 1234`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.ShellReadResult, error) {
				return c.ReadShell(cmd.Context(), args[0], args[1], o)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			io.WriteString(a.Stdout, r.Output)
			status := fmt.Sprintf("[shell] cursor=%d next_cursor=%d state=%s", r.Cursor, r.NextCursor, r.State)
			if r.ExitCode != nil {
				status += fmt.Sprintf(" exit_code=%d", *r.ExitCode)
			}
			if r.Dropped > 0 {
				status += fmt.Sprintf(" dropped=%d", r.Dropped)
			}
			if r.More {
				status += " more=true"
			}
			fmt.Fprintln(a.Stderr, status)
			return nil
		},
	}
	cmd.Flags().Int64Var(&o.Cursor, "cursor", 0, "byte offset in the shell's output to read from (the next_cursor of the last read)")
	cmd.Flags().IntVar(&o.MaxChars, "max-chars", pyro.DefaultShellMaxChars, "most output to print (bytes of the raw output)")
	cmd.Flags().BoolVar(&o.Plain, "plain", false, "strip colours and control sequences; apply carriage returns and backspaces")
	cmd.Flags().IntVar(&o.WaitForIdleMs, "wait-for-idle-ms", 0, "first wait until the shell has printed nothing for this long (at most 10000; 30 s in all)")
	return cmd
}

func (a *App) shellSignalCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "signal WORKSPACE SHELL_ID [--signal INT|TERM|KILL|HUP|QUIT]",
		Short: "Send a signal to what runs in a shell's foreground (INT is Ctrl-C)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.Shell, error) {
				return c.SignalShell(cmd.Context(), args[0], args[1], sig)
			})
			if err != nil {
				return err
			}
			return a.printResult(s)
		},
	}
	cmd.Flags().StringVar(&sig, "signal", "INT", "INT, TERM, KILL, HUP or QUIT")
	return cmd
}

func (a *App) shellListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list WORKSPACE",
		Short: "List a workspace's shells, running and exited",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.ShellList, error) { return c.ListShells(cmd.Context(), args[0]) })
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SHELL_ID\tSTATE\tEXIT_CODE\tPID\tCWD\tSIZE\tCURSOR\tSTARTED")
			for _, s := range l.Shells {
				code := "-"
				if s.ExitCode != nil {
					code = fmt.Sprint(*s.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%dx%d\t%d\t%s\n", s.ShellID, s.State, code, s.Pid, s.Cwd, s.Cols, s.Rows, s.Cursor,
					s.StartedAt.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func (a *App) shellAttachCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "attach WORKSPACE [SHELL_ID]",
		Short: "Connect this terminal to a shell (a new one if none is named); Ctrl-] detaches",
		Long: `attach puts the terminal in raw mode and connects it to a shell of the workspace:
what you type goes to the shell, its output comes to you, and a resize of your
terminal resizes its. Ctrl-] detaches and leaves the shell running; attach again
later, or read it by cursor. When the shell exits, pyro exits with its code.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := call(a, clientOptions{}, func(c *pyro.Client) (struct{}, error) {
				return struct{}{}, a.attach(cmd.Context(), c, args)
			})
			return err
		},
	}
}

// attach runs `shell attach`: open a shell when none is named, then relay
// the terminal until the shell ends or the detach key.
func (a *App) attach(ctx context.Context, c *pyro.Client, args []string) error {
	in, _ := a.Stdin.(*os.File)
	tty := in != nil && term.IsTerminal(int(in.Fd()))
	size := func() (pyro.TermSize, bool) {
		if !tty {
			return pyro.TermSize{}, false
		}
		w, h, err := term.GetSize(int(in.Fd()))
		return pyro.TermSize{Cols: w, Rows: h}, err == nil && w > 0 && h > 0
	}
	ws, shellID, replay := args[0], "", 4096
	if len(args) == 2 {
		shellID = args[1]
	} else {
		o := pyro.ShellOpenOptions{}
		if sz, ok := size(); ok {
			o.Cols, o.Rows = min(sz.Cols, 1000), min(sz.Rows, 1000)
		}
		s, err := c.OpenShell(ctx, ws, o)
		if err != nil {
			return err
		}
		shellID, replay = s.ShellID, 0
		ws = s.WorkspaceID
	}
	nl := "\n"
	if tty {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "putting the terminal in raw mode")
		}
		defer term.Restore(int(in.Fd()), old)
		nl = "\r\n"
	}
	fmt.Fprintf(a.Stderr, "[pyro] attached to shell %s of workspace %s; Ctrl-] detaches%s", shellID, ws, nl)
	actx, detach := context.WithCancel(ctx)
	defer detach()
	pr, pw := io.Pipe()
	detached := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := a.Stdin.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] == detachKey {
					pw.Write(buf[:i])
					close(detached)
					detach()
					return
				}
			}
			if n > 0 {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				pw.Close()
				return
			}
		}
	}()
	resize := make(chan pyro.TermSize, 1)
	if tty {
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		if sz, ok := size(); ok && len(args) == 2 {
			resize <- pyro.TermSize{Cols: min(sz.Cols, 1000), Rows: min(sz.Rows, 1000)}
		}
		go func() {
			for {
				select {
				case <-actx.Done():
					return
				case <-winch:
					if sz, ok := size(); ok {
						select {
						case resize <- pyro.TermSize{Cols: min(sz.Cols, 1000), Rows: min(sz.Rows, 1000)}:
						default:
						}
					}
				}
			}
		}()
	}
	s, err := c.AttachShell(actx, ws, shellID, pyro.ShellAttachOptions{Stdin: pr, Stdout: a.Stdout, Resize: resize, Replay: replay})
	select {
	case <-detached:
		fmt.Fprintf(a.Stderr, "%s[pyro] detached; shell %s keeps running: pyro workspace shell attach %s %s%s", nl, shellID, ws, shellID, nl)
		return nil
	default:
	}
	if err != nil {
		return err
	}
	code := 0
	if s.ExitCode != nil {
		code = *s.ExitCode
	}
	fmt.Fprintf(a.Stderr, "%s[pyro] shell %s %s (exit code %d)%s", nl, shellID, s.State, code, nl)
	a.exitCode = code
	return nil
}
