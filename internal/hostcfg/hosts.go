// Package hostcfg owns adding pyro to the configuration of MCP clients
// ("hosts": Claude Code, Codex, OpenCode, Claude Desktop, Cursor). One table
// says, per host, how: through the client's own CLI where it has one
// (`claude mcp add`, `codex mcp add`), else by merging its JSON
// configuration file — other servers and settings kept, the file backed up
// first. Doctor starts the configured command and asks it for tools/list.
package hostcfg

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// ServerName is the name pyro's entry has in every host's configuration.
const ServerName = "pyro"

// Host is one MCP client pyro can be added to.
type Host struct {
	Name  string // as `pyro host` takes it: claude-code, codex, ...
	Title string // as people call it
	// CLI is the client's own command that edits its configuration; ""
	// when pyro edits the file itself.
	CLI string
	// configPath is where the client keeps the MCP servers pyro writes
	// (user scope: every project sees them).
	configPath func(o *Options) string
	format     format
}

// format is how a host's configuration holds its MCP servers.
type format int

const (
	formatClaudeCLI  format = iota // `claude mcp add --scope user`; ~/.claude.json "mcpServers"
	formatCodexCLI                 // `codex mcp add`; ~/.codex/config.toml [mcp_servers.NAME]
	formatMCPServers               // JSON {"mcpServers": {NAME: {"command", "args"}}} (Claude Desktop, Cursor)
	formatOpenCode                 // JSON {"mcp": {NAME: {"type": "local", "command": [...], "enabled": true}}}
)

// Hosts is the table of hosts, in the order `pyro host doctor` reports them.
var Hosts = []Host{
	{Name: "claude-code", Title: "Claude Code", CLI: "claude", format: formatClaudeCLI, configPath: func(o *Options) string {
		if d := o.getenv("CLAUDE_CONFIG_DIR"); d != "" {
			return filepath.Join(d, ".claude.json")
		}
		return filepath.Join(o.Home, ".claude.json")
	}},
	{Name: "codex", Title: "Codex", CLI: "codex", format: formatCodexCLI, configPath: func(o *Options) string {
		if d := o.getenv("CODEX_HOME"); d != "" {
			return filepath.Join(d, "config.toml")
		}
		return filepath.Join(o.Home, ".codex", "config.toml")
	}},
	{Name: "opencode", Title: "OpenCode", format: formatOpenCode, configPath: func(o *Options) string {
		dir := filepath.Join(o.configHome(), "opencode")
		// OpenCode reads opencode.json or opencode.jsonc; edit the one
		// that exists.
		if _, err := os.Stat(filepath.Join(dir, "opencode.json")); err != nil {
			if _, err := os.Stat(filepath.Join(dir, "opencode.jsonc")); err == nil {
				return filepath.Join(dir, "opencode.jsonc")
			}
		}
		return filepath.Join(dir, "opencode.json")
	}},
	{Name: "claude-desktop", Title: "Claude Desktop", format: formatMCPServers, configPath: func(o *Options) string {
		switch runtime.GOOS {
		case "darwin":
			return filepath.Join(o.Home, "Library", "Application Support", "Claude", "claude_desktop_config.json")
		case "windows":
			return filepath.Join(o.getenv("APPDATA"), "Claude", "claude_desktop_config.json")
		}
		return filepath.Join(o.configHome(), "Claude", "claude_desktop_config.json")
	}},
	{Name: "cursor", Title: "Cursor", format: formatMCPServers, configPath: func(o *Options) string {
		return filepath.Join(o.Home, ".cursor", "mcp.json")
	}},
}

// Names lists the hosts' names.
func Names() []string {
	var names []string
	for _, h := range Hosts {
		names = append(names, h.Name)
	}
	return names
}

// Lookup finds a host by name.
func Lookup(name string) (*Host, error) {
	for i := range Hosts {
		if Hosts[i].Name == name {
			return &Hosts[i], nil
		}
	}
	return nil, errdefs.New(errdefs.ErrInvalidArgument, "hosts: "+strings.Join(Names(), ", "), "unknown host %q", name)
}

// Options say where the hosts keep their configuration and which pyro to
// write into it. Tests point Home at a temporary directory.
type Options struct {
	Home string   // default: the user's home directory
	Env  []string // the environment for the clients' CLIs and lookups; default os.Environ()
	// Self is the pyro binary entries run; default this program.
	Self string
}

func (o *Options) withDefaults() (*Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.Home == "" {
		c.Home = c.getenv("HOME")
	}
	if c.Home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "set HOME", "no home directory")
		}
		c.Home = h
	}
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "finding this pyro binary")
		}
		c.Self = self
	}
	return &c, nil
}

func (o *Options) getenv(k string) string {
	for i := len(o.Env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(o.Env[i], k+"="); ok {
			return v
		}
	}
	return ""
}

func (o *Options) configHome() string {
	if d := o.getenv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	return filepath.Join(o.Home, ".config")
}

// lookPath finds a command on the PATH of o.Env.
func (o *Options) lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(o.getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Entry is pyro's server entry in a host's configuration: the command the
// host launches.
type Entry struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
}

// NewEntry is the entry for `pyro mcp serve --profile profile`.
func NewEntry(self, profile string) Entry {
	return Entry{Command: self, Args: []string{"mcp", "serve", "--profile", profile}}
}

// Profile is the --profile the entry serves ("workspace-full" without one).
func (e Entry) Profile() string {
	for i, a := range e.Args {
		if a == "--profile" && i+1 < len(e.Args) {
			return e.Args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--profile="); ok {
			return v
		}
	}
	return "workspace-full"
}

// Equal says whether two entries launch the same command.
func (e Entry) Equal(o Entry) bool {
	return e.Command == o.Command && slices.Equal(e.Args, o.Args)
}

// Argv is the entry as one command line.
func (e Entry) Argv() []string { return append([]string{e.Command}, e.Args...) }
