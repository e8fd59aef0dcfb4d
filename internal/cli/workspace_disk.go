package cli

import (
	"encoding/base64"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// wsDiskCmd is `pyro workspace disk list|read|export`: a stopped
// workspace's disks, read offline without booting it.
func (a *App) wsDiskCmd() *cobra.Command {
	disk := &cobra.Command{
		Use:   "disk",
		Short: "Read a stopped workspace's disks offline: list, read, export",
		Long: `The disk tools read a stopped workspace's disks on the host, without booting it:
a private raw copy is read with e2fsprogs' debugfs. Paths are guest paths (relative
ones are under /workspace). Runtime-only paths (secrets, shell and service state)
are never listed, read or exported.`,
	}
	var recursive bool
	list := &cobra.Command{
		Use:   "list WORKSPACE_ID [PATH] [--recursive]",
		Short: "List a directory (default /workspace) of a stopped workspace's disk",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := ""
			if len(args) == 2 {
				p = args[1]
			}
			l, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.DiskList, error) {
				return c.ListWorkspaceDisk(cmd.Context(), args[0], p, recursive)
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(l)
			}
			return printEntries(a.Stdout, l.Entries, false, l.Count)
		},
	}
	list.Flags().BoolVar(&recursive, "recursive", false, "list everything below PATH")

	var maxBytes int
	var contentOnly bool
	read := &cobra.Command{
		Use:   "read WORKSPACE_ID PATH [--max-bytes N] [--content-only]",
		Short: "Read a file of a stopped workspace's disk",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxBytes <= 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "--max-bytes %d is out of range", maxBytes)
			}
			r, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.DiskRead, error) {
				return c.ReadWorkspaceDisk(cmd.Context(), args[0], args[1], maxBytes)
			})
			if err != nil {
				return err
			}
			if contentOnly {
				data := []byte(r.Content)
				if r.Encoding == "base64" {
					data, _ = base64.StdEncoding.DecodeString(r.Content)
				}
				_, err := a.Stdout.Write(data)
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			return printFields(a.Stdout, r)
		},
	}
	read.Flags().IntVar(&maxBytes, "max-bytes", pyro.DefaultDiskReadBytes, "read at most this many bytes")
	read.Flags().BoolVar(&contentOnly, "content-only", false, "print only the file's bytes (no JSON, no fields)")

	var output string
	var eo pyro.DiskExportOptions
	export := &cobra.Command{
		Use:   "export WORKSPACE_ID --output HOST_PATH [--disk workspace|root] [--force]",
		Short: "Write a stopped workspace's disk to a host file as a raw ext4 image",
		Example: `  pyro workspace disk export 0f3a --output ws.img
  debugfs -R 'ls -l /' ws.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				return errdefs.New(errdefs.ErrInvalidArgument, "give --output HOST_PATH", "no output path")
			}
			r, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.DiskExportResult, error) {
				return c.ExportWorkspaceDisk(cmd.Context(), args[0], output, &eo)
			})
			if err != nil {
				return err
			}
			return a.printResult(r)
		},
	}
	export.Flags().StringVar(&output, "output", "", "the host file to write (never replaced without --force)")
	export.Flags().StringVar(&eo.Disk, "disk", "", "workspace (the /workspace disk, the default) or root")
	export.Flags().BoolVar(&eo.Force, "force", false, "replace an existing output file")
	disk.AddCommand(list, read, export)
	return disk
}
