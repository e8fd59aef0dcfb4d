package hostcfg

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/version"
)

// ProbeTimeout bounds starting a configured server and listing its tools.
const ProbeTimeout = 30 * time.Second

// Status is what `pyro host doctor` found for one host.
type Status struct {
	Host       string   `json:"host"`
	Title      string   `json:"title"`
	Installed  bool     `json:"installed"`
	Configured bool     `json:"configured"`
	ConfigPath string   `json:"config_path"`
	Command    string   `json:"command,omitempty"`
	Args       []string `json:"args,omitempty"`
	Profile    string   `json:"profile,omitempty"`
	// Healthy: the configured command started and answered tools/list.
	Healthy       bool     `json:"healthy"`
	Tools         []string `json:"tools,omitempty"`
	ServerVersion string   `json:"server_version,omitempty"`
	Problem       string   `json:"problem,omitempty"`
	Hint          string   `json:"hint,omitempty"`
}

// OK says whether the host needs nothing done: not configured at all, or
// configured and healthy.
func (s *Status) OK() bool { return !s.Configured || s.Healthy }

// Doctor checks h: is pyro configured there, and does the configured
// command start and answer tools/list.
func (h *Host) Doctor(ctx context.Context, opts *Options) (*Status, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	st := &Status{Host: h.Name, Title: h.Title, Installed: h.installed(o), ConfigPath: h.configPath(o)}
	e, err := h.read(ctx, o)
	if err != nil {
		st.Problem, st.Hint = err.Error(), fmt.Sprintf("see `pyro host print-config %s` to add it by hand", h.Name)
		return st, nil
	}
	if e == nil {
		st.Problem, st.Hint = "no pyro entry", fmt.Sprintf("pyro host connect %s", h.Name)
		return st, nil
	}
	st.Configured, st.Command, st.Args, st.Profile = true, e.Command, e.Args, e.Profile()
	if p := commandProblem(e); p != "" {
		st.Problem, st.Hint = p, fmt.Sprintf("pyro host repair %s", h.Name)
		return st, nil
	}
	tools, ver, err := Probe(ctx, *e, o.Env, o.Home)
	if err != nil {
		st.Problem, st.Hint = err.Error(), fmt.Sprintf("run it yourself to see why: %s; or rewrite it with `pyro host repair %s`", strings.Join(e.Argv(), " "), h.Name)
		return st, nil
	}
	st.Healthy, st.Tools, st.ServerVersion = true, tools, ver
	if ver != version.Version {
		st.Hint = fmt.Sprintf("the configured pyro is %s, this one %s: `pyro host repair %s` switches to this one", ver, version.Version, h.Name)
	}
	return st, nil
}

// Probe starts the server e describes, in dir with env, and lists its
// tools as an MCP client would.
func Probe(ctx context.Context, e Entry, env []string, dir string) (tools []string, serverVersion string, err error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Command, e.Args...)
	cmd.Env, cmd.Dir = env, dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pyro-host-doctor", Version: version.Version}, nil).
		Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		return nil, "", fmt.Errorf("the configured command did not start an MCP server: %v%s", err, tail(stderr.String()))
	}
	defer cs.Close()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		return nil, "", fmt.Errorf("tools/list: %v%s", err, tail(stderr.String()))
	}
	for _, t := range res.Tools {
		tools = append(tools, t.Name)
	}
	if info := cs.InitializeResult().ServerInfo; info != nil {
		serverVersion = info.Version
	}
	return tools, serverVersion, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 500 {
		s = "..." + s[len(s)-500:]
	}
	return ": " + s
}
