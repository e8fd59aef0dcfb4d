package hostcfg

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Actions a Result reports.
const (
	ActionAdded         = "added"
	ActionUpdated       = "updated"
	ActionUnchanged     = "unchanged"
	ActionRemoved       = "removed"
	ActionNotConfigured = "not_configured"
	ActionPlanned       = "planned" // --print: nothing was changed
)

// Result is what connect, repair and disconnect did to one host:
// `pyro host ... --json`.
type Result struct {
	Host       string   `json:"host"`
	Action     string   `json:"action"`
	ConfigPath string   `json:"config_path"`
	Command    string   `json:"command,omitempty"`
	Args       []string `json:"args,omitempty"`
	Profile    string   `json:"profile,omitempty"`
	// Via lists the client CLI command lines run (or, planned, to run).
	Via [][]string `json:"via,omitempty"`
	// Backup is the copy of the configuration file taken before it was
	// rewritten.
	Backup string `json:"backup_path,omitempty"`
	// Config is the configuration that adds pyro (print-config, --print).
	Config string `json:"config,omitempty"`
}

// Read returns pyro's entry in h's configuration, or nil.
func (h *Host) Read(ctx context.Context, opts *Options) (*Entry, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return h.read(ctx, o)
}

func (h *Host) read(ctx context.Context, o *Options) (*Entry, error) {
	switch h.format {
	case formatCodexCLI:
		return h.readCodexEntry(ctx, o)
	case formatClaudeCLI:
		return readJSONEntry(formatMCPServers, h.configPath(o))
	default:
		return readJSONEntry(h.format, h.configPath(o))
	}
}

// write replaces pyro's entry in h's configuration with e (nil: removes
// it); old is the entry there now.
func (h *Host) write(ctx context.Context, o *Options, old, e *Entry, r *Result) error {
	if h.CLI == "" {
		b, err := writeJSONEntry(h.format, h.configPath(o), e)
		r.Backup = b
		return err
	}
	steps := [][]string{}
	if old != nil {
		steps = append(steps, h.removeArgs())
	}
	if e != nil {
		steps = append(steps, h.addArgs(*e))
	}
	for _, args := range steps {
		if _, err := h.runCLI(ctx, o, args...); err != nil {
			return err
		}
		r.Via = append(r.Via, append([]string{h.CLI}, args...))
	}
	return nil
}

// plan says what write would do, without doing it.
func (h *Host) plan(old, e *Entry, r *Result) {
	r.Action = ActionPlanned
	if h.CLI == "" {
		if e != nil {
			r.Config = jsonSnippet(h.format, *e)
		}
		return
	}
	if old != nil {
		r.Via = append(r.Via, append([]string{h.CLI}, h.removeArgs()...))
	}
	if e != nil {
		r.Via = append(r.Via, append([]string{h.CLI}, h.addArgs(*e)...))
	}
}

func (h *Host) result(o *Options, e *Entry) *Result {
	r := &Result{Host: h.Name, ConfigPath: h.configPath(o)}
	if e != nil {
		r.Command, r.Args, r.Profile = e.Command, e.Args, e.Profile()
	}
	return r
}

// Connect adds pyro, serving profile, to h's configuration, or replaces
// the entry there. With dryRun it only says what it would do.
func (h *Host) Connect(ctx context.Context, opts *Options, profile string, dryRun bool) (*Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := NewEntry(o.Self, profile)
	r := h.result(o, &e)
	old, err := h.read(ctx, o)
	if err != nil {
		return nil, err
	}
	if dryRun {
		h.plan(old, &e, r)
		return r, nil
	}
	switch {
	case old != nil && old.Equal(e):
		r.Action = ActionUnchanged
		return r, nil
	case old != nil:
		r.Action = ActionUpdated
	default:
		r.Action = ActionAdded
	}
	return r, h.write(ctx, o, old, &e, r)
}

// Repair rewrites a stale entry (a moved or deleted binary, a broken entry)
// so that it runs this pyro, keeping its profile and flags.
func (h *Host) Repair(ctx context.Context, opts *Options, dryRun bool) (*Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	old, err := h.read(ctx, o)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "add it with `pyro host connect "+h.Name+"`", "%s has no pyro entry", h.Title)
	}
	e := NewEntry(o.Self, old.Profile())
	if len(old.Args) >= 2 && old.Args[0] == "mcp" && old.Args[1] == "serve" {
		e.Args = old.Args // keep its flags: --profile, --project-path...
	}
	r := h.result(o, &e)
	if dryRun {
		h.plan(old, &e, r)
		return r, nil
	}
	if old.Equal(e) {
		r.Action = ActionUnchanged
		return r, nil
	}
	r.Action = ActionUpdated
	return r, h.write(ctx, o, old, &e, r)
}

// Disconnect removes pyro from h's configuration.
func (h *Host) Disconnect(ctx context.Context, opts *Options, dryRun bool) (*Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	old, err := h.read(ctx, o)
	if err != nil {
		return nil, err
	}
	r := h.result(o, old)
	switch {
	case old == nil:
		r.Action = ActionNotConfigured
		return r, nil
	case dryRun:
		h.plan(old, nil, r)
		return r, nil
	}
	r.Action = ActionRemoved
	return r, h.write(ctx, o, old, nil, r)
}

// PrintConfig is the configuration that adds pyro, serving profile, to h,
// for people who edit it by hand.
func (h *Host) PrintConfig(opts *Options, profile string) (*Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := NewEntry(o.Self, profile)
	r := h.result(o, &e)
	r.Action = ActionPlanned
	switch h.format {
	case formatClaudeCLI:
		r.Via = [][]string{append([]string{h.CLI}, h.addArgs(e)...)}
		r.Config = jsonSnippet(formatMCPServers, e)
	case formatCodexCLI:
		r.Via = [][]string{append([]string{h.CLI}, h.addArgs(e)...)}
		r.Config = codexSnippet(e)
	default:
		r.Config = jsonSnippet(h.format, e)
	}
	return r, nil
}

// installed says whether the host seems to be on this machine: its CLI on
// PATH, or its configuration directory present.
func (h *Host) installed(o *Options) bool {
	if h.CLI != "" {
		_, err := o.lookPath(h.CLI)
		return err == nil
	}
	dir := h.configPath(o)
	dir = dir[:strings.LastIndexByte(dir, os.PathSeparator)]
	_, err := os.Stat(dir)
	return err == nil
}

// commandProblem says what is wrong with an entry's command, or "".
func commandProblem(e *Entry) string {
	if e.Command == "" {
		return "the entry has no command"
	}
	fi, err := os.Stat(e.Command)
	switch {
	case os.IsNotExist(err) && strings.ContainsRune(e.Command, os.PathSeparator):
		return fmt.Sprintf("%s does not exist (moved or deleted?)", e.Command)
	case err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0):
		return fmt.Sprintf("%s is not an executable file", e.Command)
	}
	return ""
}
