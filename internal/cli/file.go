package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// wsFileCmds are the file operations of a running workspace: `file
// list|read|write`, `patch apply`, `export`, `diff`, `summary`.
func (a *App) wsFileCmds() []*cobra.Command {
	return []*cobra.Command{a.wsFileCmd(), a.wsPatchCmd(), a.wsExportCmd(), a.wsDiffCmd(), a.wsSummaryCmd()}
}

func (a *App) wsFileCmd() *cobra.Command {
	file := &cobra.Command{
		Use:   "file",
		Short: "Files of a running workspace: list, read, write",
		Long: `The file commands work on a workspace's /workspace through its guest (a stopped
workspace is booted first). Paths are guest paths; relative ones are under
/workspace. Every path is confined to /workspace after '..' and symlinks are
resolved in the guest: a symlink that leads out of it is never followed.`,
	}
	var recursive bool
	list := &cobra.Command{
		Use:   "list WORKSPACE_ID [PATH] [--recursive]",
		Short: "List a directory (default /workspace): type, mode, size, mtime, link target",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := ""
			if len(args) == 2 {
				p = args[1]
			}
			l, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.FileList, error) {
				return c.ListWorkspaceFiles(cmd.Context(), args[0], p, recursive)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			return printEntries(a.Stdout, l.Entries, l.Truncated, l.Count)
		},
	}
	list.Flags().BoolVar(&recursive, "recursive", false, "list everything below PATH")

	var maxBytes int64
	var contentOnly bool
	read := &cobra.Command{
		Use:   "read WORKSPACE_ID PATH [--max-bytes N] [--content-only]",
		Short: "Read a file of a workspace (default cap 65536 bytes)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxBytes <= 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "--max-bytes %d is out of range", maxBytes)
			}
			if contentOnly {
				// Streamed to stdout as it arrives, whatever its size.
				streams := &pyro.ExecOptions{Stdout: a.Stdout}
				_, err := call(a, clientOptions{streams: streams}, func(c *pyro.Client) (*pyro.FileRead, error) {
					return c.StreamWorkspaceFile(cmd.Context(), args[0], args[1], streams.Stdout, maxBytes)
				})
				return err
			}
			r, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.FileRead, error) {
				return c.ReadWorkspaceFile(cmd.Context(), args[0], args[1], int(min(maxBytes, 1<<30)))
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			return printFields(a.Stdout, r)
		},
	}
	read.Flags().Int64Var(&maxBytes, "max-bytes", pyro.DefaultFileReadBytes, "read at most this many bytes")
	read.Flags().BoolVar(&contentOnly, "content-only", false, "print only the file's bytes, streamed (no JSON, no fields)")

	var text, textFile, mode string
	var stdin bool
	write := &cobra.Command{
		Use:   "write WORKSPACE_ID PATH (--text TEXT | --text-file F | --stdin) [--mode M]",
		Short: "Write a file of a workspace atomically, creating its parent directories",
		Example: `  pyro workspace file write 0f3a src/config.json --text '{"debug": true}'
  pyro workspace file write 0f3a run.sh --text-file ./run.sh --mode 0755
  tar -cf - . | pyro workspace file write 0f3a upload.tar --stdin`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := 0
			for _, b := range []bool{cmd.Flags().Changed("text"), textFile != "", stdin} {
				if b {
					set++
				}
			}
			if set != 1 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give exactly one of --text TEXT, --text-file FILE and --stdin", "no content, or more than one")
			}
			var o pyro.FileWriteOptions
			if mode != "" {
				m, err := strconv.ParseUint(mode, 8, 32)
				if err != nil || m > 0o7777 {
					return errdefs.New(errdefs.ErrInvalidArgument, "give permission bits in octal, e.g. 0644 or 0755", "--mode %q is not a file mode", mode)
				}
				o.Mode = uint32(m)
			}
			var r io.Reader = strings.NewReader(text)
			switch {
			case textFile != "":
				f, err := os.Open(textFile)
				if err != nil {
					return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the path", "--text-file %s", textFile)
				}
				defer f.Close()
				r = f
			case stdin:
				r = a.Stdin
			}
			res, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.FileWriteResult, error) {
				return c.WriteWorkspaceFile(cmd.Context(), args[0], args[1], r, &o)
			})
			if err != nil {
				return err
			}
			return a.printResult(res)
		},
	}
	write.Flags().StringVar(&text, "text", "", "the file's content")
	write.Flags().StringVar(&textFile, "text-file", "", "a host file whose content to write (streamed)")
	write.Flags().BoolVar(&stdin, "stdin", false, "write what pyro reads on its standard input (streamed)")
	write.Flags().StringVar(&mode, "mode", "", "permission bits in octal (default: keep an existing file's, 0644 for a new one)")
	file.AddCommand(list, read, write)
	return file
}

func (a *App) wsPatchCmd() *cobra.Command {
	patch := &cobra.Command{Use: "patch", Short: "Apply a unified diff to a workspace's files"}
	var text, file string
	apply := &cobra.Command{
		Use:   "apply WORKSPACE_ID (--patch TEXT | --patch-file F)",
		Short: "Apply a unified diff under /workspace, all or nothing",
		Long: `Applies a unified diff (git diff's format, or diff -u's: added, modified, deleted,
renamed files, mode changes, symlinks) under /workspace, in the guest. Every hunk
of every file is checked before anything is written; when one does not apply, the
error names the file, the hunk and the lines that differ, and nothing changed.
A hunk whose lines are elsewhere than its header says is found there, as with
git apply. --patch-file - reads the patch from standard input.`,
		Example: `  git diff > fix.patch && pyro workspace patch apply 0f3a --patch-file fix.patch
  pyro workspace diff 0f3a | pyro workspace patch apply 9b2c --patch-file -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("patch") == (file != "") {
				return errdefs.New(errdefs.ErrInvalidArgument, "give exactly one of --patch TEXT and --patch-file FILE", "no patch, or two")
			}
			body := text
			if file != "" {
				var r io.Reader = a.Stdin
				if file != "-" {
					f, err := os.Open(file)
					if err != nil {
						return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the path", "--patch-file %s", file)
					}
					defer f.Close()
					r = f
				}
				b, err := io.ReadAll(io.LimitReader(r, pyro.MaxPatchBytes+1))
				if err != nil {
					return err
				}
				if len(b) > pyro.MaxPatchBytes {
					return errdefs.New(errdefs.ErrInvalidArgument, "split it into smaller patches", "the patch is over %d bytes", pyro.MaxPatchBytes)
				}
				body = string(b)
			}
			res, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.PatchResult, error) {
				return c.ApplyWorkspacePatch(cmd.Context(), args[0], body)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			for _, f := range res.Files {
				name := f.Path
				if f.OldPath != "" {
					name = f.OldPath + " => " + f.Path
				}
				fmt.Fprintf(a.Stdout, "%-12s %s (+%d -%d)\n", f.Status, name, f.Insertions, f.Deletions)
			}
			fmt.Fprintf(a.Stdout, "%d file(s) changed, %d insertion(s), %d deletion(s)\n", res.Count, res.Insertions, res.Deletions)
			return nil
		},
	}
	apply.Flags().StringVar(&text, "patch", "", "the unified diff")
	apply.Flags().StringVar(&file, "patch-file", "", "a host file holding the unified diff (- for standard input)")
	patch.AddCommand(apply)
	return patch
}

func (a *App) wsExportCmd() *cobra.Command {
	var output string
	var force bool
	cmd := &cobra.Command{
		Use:   "export WORKSPACE_ID PATH --output HOST_PATH [--force]",
		Short: "Copy a file or directory out of /workspace to the host (or to a .tar/.tar.gz)",
		Long: `Copies PATH (a file or a directory under /workspace) to HOST_PATH on the host, as
itself, or as an archive when HOST_PATH ends in .tar, .tar.gz or .tgz. Symlinks come
out as symlinks and are never followed; a symlink that leads out of what is exported,
and devices, FIFOs and sockets, are left out and listed. The limits of a sync push
hold (2 GiB of content, 200,000 entries). An existing HOST_PATH is never replaced
without --force, and never written through when it is a symlink.`,
		Example: `  pyro workspace export 0f3a src --output ./src-from-vm
  pyro workspace export 0f3a . --output result.tar.gz`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				return errdefs.New(errdefs.ErrInvalidArgument, "give --output HOST_PATH", "no output path")
			}
			res, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.ExportResult, error) {
				return c.ExportWorkspace(cmd.Context(), args[0], args[1], output, &pyro.ExportOptions{Force: force})
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "exported %s to %s (%s): %d entries, %d bytes\n", res.Path, res.OutputPath, res.Format, res.Entries, res.Bytes)
			for _, s := range res.Skipped {
				fmt.Fprintf(a.Stdout, "skipped %s: %s\n", s.Path, s.Reason)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "the host path to write (a .tar, .tar.gz or .tgz name makes an archive)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output (a file, directory or symlink itself)")
	return cmd
}

func (a *App) wsSummaryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "summary WORKSPACE_ID",
		Short: "What happened since create or the last reset: commands, files changed, exports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.WorkspaceSummary, error) {
				return c.SummarizeWorkspace(cmd.Context(), args[0])
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(s)
			}
			a.printSummary(s)
			return nil
		},
	}
}

func (a *App) printSummary(s *pyro.WorkspaceSummary) {
	w := a.Stdout
	since := "created " + s.Since.At.Local().Format(time.RFC3339)
	if s.Since.Event == "reset" {
		since = fmt.Sprintf("reset to %s at #%d, %s", s.Since.Snapshot, s.Since.Sequence, s.Since.At.Local().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "workspace %s, since %s\n", s.WorkspaceID, since)
	fmt.Fprintf(w, "\ncommands: %d (%d failed)\n", s.CommandCount, s.FailedCommands)
	for _, c := range s.Commands {
		status := fmt.Sprintf("exit %d", c.ExitCode)
		if c.TimedOut {
			status = "timed out"
		}
		fmt.Fprintf(w, "  #%d %-9s %s\n", c.Sequence, status, strings.Join(c.Command, " "))
	}
	fmt.Fprintf(w, "\nfile writes: %d, patches: %d, syncs: %d\n", s.FileWrites, s.Patches, s.Syncs)
	fmt.Fprintf(w, "\nexports: %d\n", len(s.Exports))
	for _, e := range s.Exports {
		fmt.Fprintf(w, "  #%d %s -> %s (%d entries, %d bytes)\n", e.Sequence, e.Path, e.OutputPath, e.Entries, e.Bytes)
	}
	if !s.Changes.Available {
		fmt.Fprintf(w, "\nchanges since the baseline: not available (%s)\n", s.Changes.Note)
		return
	}
	if s.Changes.Count == 0 {
		fmt.Fprintf(w, "\nchanges since the baseline: none\n")
		return
	}
	fmt.Fprintf(w, "\nchanges since the baseline:\n")
	writeStat(w, s.Changes.Files)
}

// fileEventLine is a log line of a file operation's entry.
func fileEventLine(le pyro.LogEntry) string {
	ev := le.FileEvent
	if ev == nil {
		return "[" + le.Kind + "]"
	}
	switch le.Kind {
	case pyro.LogFileWrite:
		return fmt.Sprintf("[file_write] %s (%d bytes)", ev.Path, ev.Bytes)
	case pyro.LogPatch:
		var names []string
		for _, f := range ev.Files {
			names = append(names, f.Status+" "+f.Path)
		}
		return fmt.Sprintf("[patch] %d file(s): %s", ev.Entries, strings.Join(names, ", "))
	case pyro.LogSync:
		return fmt.Sprintf("[sync] %s -> %s (%d entries, %d bytes)", ev.SourcePath, ev.Dest, ev.Entries, ev.Bytes)
	case pyro.LogExport:
		return fmt.Sprintf("[export] %s -> %s (%d entries, %d bytes, %d skipped)", ev.Path, ev.OutputPath, ev.Entries, ev.Bytes, ev.Skipped)
	}
	return "[" + le.Kind + "]"
}

// printEntries is the table of a file or disk listing: type, mode, size,
// mtime, path (and a link's target).
func printEntries(w io.Writer, entries []api.FileEntry, truncated bool, count int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range entries {
		name := e.Path
		if e.LinkTarget != "" {
			name += " -> " + e.LinkTarget
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Type, e.Mode, e.Size, e.MTime.Local().Format(time.RFC3339), name)
	}
	if truncated {
		fmt.Fprintf(tw, "(only the first %d entries are listed)\n", count)
	}
	return tw.Flush()
}
