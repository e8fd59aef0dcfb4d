package hostcfg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// cliTimeout bounds one run of a client's CLI.
const cliTimeout = 60 * time.Second

// addArgs is the client CLI's command line that adds e.
func (h *Host) addArgs(e Entry) []string {
	switch h.format {
	case formatClaudeCLI:
		return append([]string{"mcp", "add", "--scope", "user", ServerName, "--"}, e.Argv()...)
	default:
		return append([]string{"mcp", "add", ServerName, "--"}, e.Argv()...)
	}
}

// removeArgs is the client CLI's command line that removes pyro.
func (h *Host) removeArgs() []string {
	if h.format == formatClaudeCLI {
		return []string{"mcp", "remove", "--scope", "user", ServerName}
	}
	return []string{"mcp", "remove", ServerName}
}

// runCLI runs the host's CLI with args and returns its stdout.
func (h *Host) runCLI(ctx context.Context, o *Options, args ...string) ([]byte, error) {
	bin, err := o.lookPath(h.CLI)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition,
			fmt.Sprintf("install %s first, or add pyro to it by hand: `pyro host print-config %s`", h.Title, h.Name),
			"%s's command %q is not on PATH", h.Title, h.CLI)
	}
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append([]string{}, o.Env...), cliEnv...)
	cmd.Dir = o.Home
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, errdefs.Wrap(errdefs.ErrFailedPrecondition, fmt.Errorf("%w: %s", err, msg),
			fmt.Sprintf("run it yourself to see why: %s %s", h.CLI, strings.Join(args, " ")), "%s %s", h.CLI, strings.Join(args[:2], " "))
	}
	return out, nil
}

// cliEnv keeps the clients' CLIs from phoning home while pyro edits their
// configuration.
var cliEnv = []string{"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1"}

// readCodexEntry asks Codex for pyro's entry; nil when there is none.
func (h *Host) readCodexEntry(ctx context.Context, o *Options) (*Entry, error) {
	out, err := h.runCLI(ctx, o, "mcp", "get", ServerName, "--json")
	if err != nil {
		if strings.Contains(err.Error(), "No MCP server") || strings.Contains(err.Error(), "not found") {
			return nil, nil
		}
		return nil, err
	}
	var got struct {
		Transport struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"transport"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "reading `codex mcp get %s --json`", ServerName)
	}
	return &Entry{Command: got.Transport.Command, Args: got.Transport.Args}, nil
}

// codexSnippet is the TOML that adds pyro to ~/.codex/config.toml.
func codexSnippet(e Entry) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var args []string
	for _, a := range e.Args {
		args = append(args, q(a))
	}
	return fmt.Sprintf("[mcp_servers.%s]\ncommand = %s\nargs = [%s]\ntool_timeout_sec = 600\n", ServerName, q(e.Command), strings.Join(args, ", "))
}
