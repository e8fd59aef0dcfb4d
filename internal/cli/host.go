package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro/internal/hostcfg"
	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// newHostCmd wires `pyro host`: pyro in MCP clients' configuration. The
// work is internal/hostcfg's; this file parses flags and prints.
func (a *App) newHostCmd() *cobra.Command {
	hosts := strings.Join(hostcfg.Names(), ", ")
	root := &cobra.Command{
		Use:   "host",
		Short: "Add pyro to an MCP client (Claude Code, Codex, OpenCode, Claude Desktop, Cursor), check it, repair it",
		Long: `pyro host writes pyro's MCP server into a client's configuration: through the
client's own CLI where it has one (claude mcp add, codex mcp add), else by merging its
JSON configuration file (other servers kept, the file backed up first). The entry runs
this pyro binary with 'mcp serve --profile workspace-core' unless --profile says otherwise.

Hosts: ` + hosts + `.`,
	}
	var profile string
	var dryRun bool
	profileFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&profile, "profile", mcpserver.ProfileWorkspaceCore, "tool set the entry serves: workspace-core, workspace-full or vm-run")
	}
	printFlag := func(c *cobra.Command) {
		c.Flags().BoolVar(&dryRun, "print", false, "only print what would be done")
	}
	hostArg := func(run func(*cobra.Command, *hostcfg.Host) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			h, err := hostcfg.Lookup(args[0])
			if err != nil {
				return err
			}
			return run(cmd, h)
		}
	}

	connect := &cobra.Command{
		Use:   "connect HOST [--profile PROFILE] [--print]",
		Short: "Add pyro to a client's MCP configuration (or update the entry there)",
		Example: `  pyro host connect claude-code
  pyro host connect codex --profile workspace-full
  pyro host connect cursor --print`,
		Args: cobra.ExactArgs(1),
		RunE: hostArg(func(cmd *cobra.Command, h *hostcfg.Host) error {
			if err := mcpserver.CheckProfile(profile); err != nil {
				return err
			}
			r, err := h.Connect(cmd.Context(), nil, profile, dryRun)
			if err != nil {
				return err
			}
			return a.printHostResult(r)
		}),
	}
	profileFlag(connect)
	printFlag(connect)

	printConfig := &cobra.Command{
		Use:   "print-config HOST [--profile PROFILE]",
		Short: "Print the configuration that adds pyro to a client, to paste by hand",
		Args:  cobra.ExactArgs(1),
		RunE: hostArg(func(cmd *cobra.Command, h *hostcfg.Host) error {
			if err := mcpserver.CheckProfile(profile); err != nil {
				return err
			}
			r, err := h.PrintConfig(nil, profile)
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(r)
			}
			for _, v := range r.Via {
				fmt.Fprintf(a.Stdout, "%s\n# or, in %s:\n", shellLine(v), r.ConfigPath)
			}
			if len(r.Via) == 0 {
				fmt.Fprintf(a.Stdout, "# in %s (merge with the servers already there):\n", r.ConfigPath)
			}
			fmt.Fprint(a.Stdout, r.Config)
			return nil
		}),
	}
	profileFlag(printConfig)

	repair := &cobra.Command{
		Use:   "repair HOST [--print]",
		Short: "Rewrite pyro's entry in a client so that it runs this pyro (after a move or an upgrade), keeping its flags",
		Args:  cobra.ExactArgs(1),
		RunE: hostArg(func(cmd *cobra.Command, h *hostcfg.Host) error {
			r, err := h.Repair(cmd.Context(), nil, dryRun)
			if err != nil {
				return err
			}
			return a.printHostResult(r)
		}),
	}
	printFlag(repair)

	disconnect := &cobra.Command{
		Use:   "disconnect HOST [--print]",
		Short: "Remove pyro from a client's MCP configuration",
		Args:  cobra.ExactArgs(1),
		RunE: hostArg(func(cmd *cobra.Command, h *hostcfg.Host) error {
			r, err := h.Disconnect(cmd.Context(), nil, dryRun)
			if err != nil {
				return err
			}
			return a.printHostResult(r)
		}),
	}
	printFlag(disconnect)

	doctor := &cobra.Command{
		Use:   "doctor [HOST]",
		Short: "Check whether pyro is configured in each client and whether its entry starts and answers tools/list",
		Long: `host doctor reads each client's configuration (or only HOST's), starts the configured
pyro command as the client would, and lists its tools. It exits 1 when a configured entry
does not work, or when HOST is named and pyro is not configured there.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var hs []*hostcfg.Host
			if len(args) == 1 {
				h, err := hostcfg.Lookup(args[0])
				if err != nil {
					return err
				}
				hs = append(hs, h)
			} else {
				for i := range hostcfg.Hosts {
					hs = append(hs, &hostcfg.Hosts[i])
				}
			}
			report := HostReport{OK: true, Hosts: []*hostcfg.Status{}}
			for _, h := range hs {
				st, err := h.Doctor(cmd.Context(), nil)
				if err != nil {
					return err
				}
				report.Hosts = append(report.Hosts, st)
				if !st.OK() || (len(args) == 1 && !st.Configured) {
					report.OK = false
				}
			}
			if !report.OK {
				a.exitCode = ExitError
			}
			if a.JSON {
				return a.printJSON(report)
			}
			for _, st := range report.Hosts {
				a.printHostStatus(st)
			}
			return nil
		},
	}

	root.AddCommand(connect, printConfig, doctor, repair, disconnect)
	return root
}

// HostReport is `pyro host doctor --json`.
type HostReport struct {
	OK    bool              `json:"ok"`
	Hosts []*hostcfg.Status `json:"hosts"`
}

func (a *App) printHostResult(r *hostcfg.Result) error {
	if a.JSON {
		return a.printJSON(r)
	}
	switch r.Action {
	case hostcfg.ActionPlanned:
		for _, v := range r.Via {
			fmt.Fprintf(a.Stdout, "would run: %s\n", shellLine(v))
		}
		if r.Config != "" {
			fmt.Fprintf(a.Stdout, "would merge into %s:\n%s", r.ConfigPath, r.Config)
		}
	case hostcfg.ActionNotConfigured:
		fmt.Fprintf(a.Stdout, "%s has no pyro entry (%s)\n", r.Host, r.ConfigPath)
	default:
		fmt.Fprintf(a.Stdout, "%s: pyro %s in %s\n", r.Host, r.Action, r.ConfigPath)
		if r.Command != "" {
			fmt.Fprintf(a.Stdout, "command: %s\n", shellLine(append([]string{r.Command}, r.Args...)))
		}
		for _, v := range r.Via {
			fmt.Fprintf(a.Stdout, "ran: %s\n", shellLine(v))
		}
		if r.Backup != "" {
			fmt.Fprintf(a.Stdout, "backup: %s\n", r.Backup)
		}
	}
	return nil
}

func (a *App) printHostStatus(st *hostcfg.Status) {
	state := "not installed"
	switch {
	case st.Healthy:
		state = fmt.Sprintf("configured, answers tools/list (%d tools, profile %s, pyro %s)", len(st.Tools), st.Profile, st.ServerVersion)
	case st.Configured:
		state = "configured, BROKEN: " + st.Problem
	case st.Installed:
		state = "installed, " + st.Problem
	}
	fmt.Fprintf(a.Stdout, "%-15s %s\n", st.Host, state)
	if st.Configured {
		fmt.Fprintf(a.Stdout, "%-15s command: %s\n", "", shellLine(append([]string{st.Command}, st.Args...)))
	}
	if st.Hint != "" && (st.Installed || st.Configured) {
		fmt.Fprintf(a.Stdout, "%-15s hint: %s\n", "", st.Hint)
	}
}

// shellLine shows argv as one command line, quoting what needs it.
func shellLine(argv []string) string {
	var parts []string
	for _, s := range argv {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
