package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func (a *App) wsDiffCmd() *cobra.Command {
	var stat, nameOnly, numstat bool
	cmd := &cobra.Command{
		Use:   "diff WORKSPACE_ID [--stat | --numstat | --name-only] [PATH...]",
		Short: "What changed in /workspace since the workspace was created (its baseline)",
		Long: `Compares /workspace (or the PATHs under it) with the workspace's baseline: the state
it was created in, right after its seed. The output is git's: a unified diff per text
file, which git apply and 'pyro workspace patch apply' take; one line for a binary
file; mode, type and symlink changes. Directories show through their files, and .git
directories are left out. --stat, --numstat and --name-only print what git diff
prints with them. A workspace made by pyro 2.4 has no baseline.`,
		Example: `  pyro workspace diff 0f3a > change.patch
  pyro workspace diff 0f3a --stat src`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{stat, nameOnly, numstat} {
				if b {
					n++
				}
			}
			if n > 1 {
				return errdefs.New(errdefs.ErrInvalidArgument, "give one of --stat, --numstat and --name-only", "more than one output format")
			}
			o := &pyro.DiffOptions{Paths: args[1:], Stat: stat || numstat, NameOnly: nameOnly}
			d, err := call(a, clientOptions{}, func(c *pyro.Client) (*pyro.Diff, error) {
				return c.DiffWorkspace(cmd.Context(), args[0], o)
			})
			if err != nil {
				return err
			}
			switch {
			case a.JSON:
				return a.printJSON(d)
			case nameOnly:
				for _, e := range d.Entries {
					fmt.Fprintln(a.Stdout, e.Path)
				}
			case numstat:
				for _, e := range d.Entries {
					if e.Binary {
						fmt.Fprintf(a.Stdout, "-\t-\t%s\n", e.Path)
					} else {
						fmt.Fprintf(a.Stdout, "%d\t%d\t%s\n", e.Insertions, e.Deletions, e.Path)
					}
				}
			case stat:
				writeStat(a.Stdout, d.Entries)
			default:
				for _, e := range d.Entries {
					if e.PatchOmitted {
						fmt.Fprintf(a.Stdout, "diff --git a/%s b/%s\n# patch omitted: the diff is over %d bytes; diff this path alone\n", e.Path, e.Path, pyro.MaxDiffPatchBytes)
						continue
					}
					io.WriteString(a.Stdout, e.Patch)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&stat, "stat", false, "a line per file with its insertions and deletions, and a summary (git diff --stat)")
	cmd.Flags().BoolVar(&numstat, "numstat", false, "insertions, deletions and path per file, tab-separated (git diff --numstat)")
	cmd.Flags().BoolVar(&nameOnly, "name-only", false, "the changed paths only")
	return cmd
}

// statWidth is the width git's --stat fills when not on a terminal.
const statWidth = 80

// writeStat prints entries as git diff --stat does: the same columns and
// graph scaling for an 80-column output, and the same summary line.
func writeStat(w io.Writer, entries []pyro.DiffEntry) {
	if len(entries) == 0 {
		return // git prints nothing either
	}
	maxLen, maxChange, numberWidth, binWidth := 0, int64(0), 0, 0
	var ins, del int64
	for _, e := range entries {
		maxLen = max(maxLen, len(e.Path))
		if e.Binary {
			binWidth = max(binWidth, 14+len(strconv.FormatInt(e.OldSize, 10))+len(strconv.FormatInt(e.NewSize, 10)))
			numberWidth = 3
			continue
		}
		maxChange = max(maxChange, e.Insertions+e.Deletions)
		ins += e.Insertions
		del += e.Deletions
	}
	numberWidth = max(numberWidth, len(strconv.FormatInt(maxChange, 10)))
	width := max(statWidth, 16+6+numberWidth)
	graphWidth := int(maxChange)
	if int(maxChange)+4 <= binWidth {
		graphWidth = binWidth - 4
	}
	nameWidth := maxLen
	if nameWidth+numberWidth+6+graphWidth > width {
		if graphWidth > width*3/8-numberWidth-6 {
			graphWidth = max(width*3/8-numberWidth-6, 6)
		}
		if nameWidth > width-numberWidth-6-graphWidth {
			nameWidth = width - numberWidth - 6 - graphWidth
		} else {
			graphWidth = width - numberWidth - 6 - nameWidth
		}
	}
	for _, e := range entries {
		name := e.Path
		if len(name) > nameWidth {
			name = "..." + name[len(name)-max(nameWidth-3, 0):]
		}
		if e.Binary {
			fmt.Fprintf(w, " %-*s | Bin %d -> %d bytes\n", nameWidth, name, e.OldSize, e.NewSize)
			continue
		}
		add, rm := e.Insertions, e.Deletions
		if int64(graphWidth) <= maxChange {
			total := scaleLinear(add+rm, graphWidth, maxChange)
			if total < 2 && add > 0 && rm > 0 {
				total = 2
			}
			if add < rm {
				add = scaleLinear(add, graphWidth, maxChange)
				rm = total - add
			} else {
				rm = scaleLinear(rm, graphWidth, maxChange)
				add = total - rm
			}
		}
		line := fmt.Sprintf(" %-*s | %*d", nameWidth, name, numberWidth, e.Insertions+e.Deletions)
		if add+rm > 0 {
			line += " " + strings.Repeat("+", int(add)) + strings.Repeat("-", int(rm))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, statSummary(len(entries), ins, del))
}

// scaleLinear is git's: at least one column for any change.
func scaleLinear(it int64, width int, maxChange int64) int64 {
	if it == 0 {
		return 0
	}
	return 1 + it*int64(width-1)/maxChange
}

// statSummary is git's last --stat line.
func statSummary(files int, ins, del int64) string {
	s := fmt.Sprintf(" %d files changed", files)
	if files == 1 {
		s = " 1 file changed"
	}
	if ins > 0 || del == 0 {
		s += fmt.Sprintf(", %d %s(+)", ins, plural(ins, "insertion"))
	}
	if del > 0 || ins == 0 {
		s += fmt.Sprintf(", %d %s(-)", del, plural(del, "deletion"))
	}
	return s
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
