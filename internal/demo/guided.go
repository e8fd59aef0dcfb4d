// Package demo owns pyro's two demos: the guided tour behind `pyro demo`
// (a one-shot VM, then a seeded workspace through exec, logs and delete,
// all through the Go SDK) and the agent loop behind `pyro demo ollama` (a
// local model served by Ollama's OpenAI-compatible chat-completions API,
// driving pyro's real MCP tools in-process).
//
// Neither prints anything itself: the CLI decides what goes to stdout and
// what to stderr, from the callbacks and the reports returned here.
package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/aptsource"
)

// GuidedOptions configure Guided. The zero value is the plain tour.
type GuidedOptions struct {
	// Environment the tour boots; default debian:12 (it needs git and curl).
	Environment string
	// Network gives the workspace outbound network and adds a step that
	// proves egress with curl.
	Network bool
	// OnStep, when set, is called as each step finishes, with the number
	// of steps in the tour.
	OnStep func(s Step, total int)
}

// Step is one finished step of the tour: an element of `pyro demo --json`'s
// "steps".
type Step struct {
	Number     int    `json:"number"`
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Detail     string `json:"detail"` // the one-line outcome shown by the human output
	DurationMs int64  `json:"duration_ms"`
	// Result is the SDK's result of the step, with the JSON of the matching
	// command (`pyro run --json`, `pyro workspace create --json`, ...).
	Result any `json:"result"`
}

// GuidedReport is the outcome of the tour: `pyro demo --json`.
type GuidedReport struct {
	OK          bool   `json:"ok"` // every step succeeded
	Environment string `json:"environment"`
	Network     bool   `json:"network"`
	StepCount   int    `json:"step_count"`
	StepsOK     int    `json:"steps_ok"`
	Steps       []Step `json:"steps"`
	TotalMs     int64  `json:"total_ms"`
}

// egressURL is what the network step fetches: the Debian mirror the host's
// apt uses (or $PYRO_DEBIAN_MIRROR), which a `--network` guest can be
// expected to reach; "" when none is configured.
func egressURL() string {
	if m := aptsource.Mirror("", "bookworm"); m != "" {
		return m + "/"
	}
	return ""
}

// seedFiles are the host files /workspace is seeded with.
var seedFiles = map[string]string{
	"hello.sh":   "#!/bin/sh\n# Seeded from the host by pyro demo; runs inside the workspace.\necho \"hello from $(pwd):\" $(ls)\n",
	"README.txt": "This directory was copied into a pyro workspace's /workspace by `pyro demo`.\n",
}

// Guided runs the tour with c. A command that ran but failed (git missing,
// no network) marks its step failed and the tour goes on; the report says
// so. pyro's own failure (no guest can boot, a workspace that cannot be
// created) ends the tour with an error naming the step, and the report of
// the steps done so far. A workspace the tour created is always deleted.
func Guided(ctx context.Context, c *pyro.Client, o GuidedOptions) (*GuidedReport, error) {
	if o.Environment == "" {
		o.Environment = pyro.DefaultEnvironment
	}
	names := []string{"boot + git --version", "workspace create", "workspace exec"}
	if o.Network {
		names = append(names, "network egress")
	}
	names = append(names, "workspace logs", "workspace delete")
	rep := &GuidedReport{Environment: o.Environment, Network: o.Network, StepCount: len(names), Steps: []Step{}}
	start := time.Now()
	defer func() { rep.TotalMs = time.Since(start).Milliseconds() }()

	// step runs fn as the next step and records it; fn reports the
	// outcome of a command that ran, err is pyro's own failure.
	step := func(fn func() (ok bool, detail string, result any, err error)) error {
		n := len(rep.Steps) + 1
		t := time.Now()
		ok, detail, result, err := fn()
		if err != nil {
			return fmt.Errorf("demo step %d/%d %s: %w", n, len(names), names[n-1], err)
		}
		s := Step{Number: n, Name: names[n-1], OK: ok, Detail: detail, DurationMs: time.Since(t).Milliseconds(), Result: result}
		rep.Steps = append(rep.Steps, s)
		if ok {
			rep.StepsOK++
		}
		if o.OnStep != nil {
			o.OnStep(s, len(names))
		}
		return nil
	}
	finish := func(err error) (*GuidedReport, error) {
		rep.OK = err == nil && rep.StepsOK == rep.StepCount
		rep.TotalMs = time.Since(start).Milliseconds()
		return rep, err
	}

	// 1. A one-shot VM: boot, run, delete.
	if err := step(func() (bool, string, any, error) {
		r, err := c.RunInVM(ctx, pyro.RunOptions{Environment: o.Environment, Command: "git --version", TimeoutSeconds: 60})
		if err != nil {
			return false, "", nil, err
		}
		out := firstLine(r.Stdout)
		if r.ExitCode != 0 || r.TimedOut || !strings.HasPrefix(out, "git version") {
			return false, "FAILED: " + commandFailure(&r.ExecResult), r, nil
		}
		return true, out, r, nil
	}); err != nil {
		return finish(err)
	}

	// 2. A workspace seeded from a directory made here.
	seed, err := os.MkdirTemp("", "pyro-demo-seed-")
	if err != nil {
		return finish(fmt.Errorf("making the seed directory: %w", err))
	}
	defer os.RemoveAll(seed)
	for name, body := range seedFiles {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(body), 0o755); err != nil {
			return finish(fmt.Errorf("writing the seed directory: %w", err))
		}
	}
	var wsID string
	defer func() {
		if wsID == "" {
			return
		}
		// Interrupted or failed half-way: still remove the workspace.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		c.DeleteWorkspace(cctx, wsID)
	}()
	if err := step(func() (bool, string, any, error) {
		w, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: o.Environment, SeedPath: seed, Shape: pyro.Shape{Network: o.Network}})
		if err != nil {
			return false, "", nil, err
		}
		wsID = w.WorkspaceID
		net := ""
		if o.Network {
			net = ", with network"
		}
		return true, fmt.Sprintf("workspace %s booted in %s%s, /workspace seeded with %d entries from a temp dir",
			w.WorkspaceID, Seconds(w.BootMs), net, w.WorkspaceSeed.Entries), w, nil
	}); err != nil {
		return finish(err)
	}

	// 3. A command in the workspace, using the seeded files.
	commands := 0
	exec := func(command string, check func(*pyro.WorkspaceExecResult) (bool, string)) func() (bool, string, any, error) {
		return func() (bool, string, any, error) {
			r, err := c.ExecWorkspace(ctx, wsID, pyro.ExecOptions{Command: command, TimeoutSeconds: 60})
			if err != nil {
				return false, "", nil, err
			}
			commands++
			ok, detail := check(r)
			return ok, detail, r, nil
		}
	}
	if err := step(exec("sh hello.sh", func(r *pyro.WorkspaceExecResult) (bool, string) {
		if r.ExitCode != 0 || r.TimedOut {
			return false, "sh hello.sh: FAILED: " + commandFailure(&r.ExecResult)
		}
		return true, fmt.Sprintf("sh hello.sh: %s (exit 0)", firstLine(r.Stdout))
	})); err != nil {
		return finish(err)
	}

	// 4. Egress, honestly: curl's own error when there is none.
	if o.Network {
		url := egressURL()
		var fn func() (bool, string, any, error)
		if url == "" {
			fn = func() (bool, string, any, error) {
				return false, "FAILED: no Debian mirror in the host's apt sources to try; set PYRO_DEBIAN_MIRROR", nil, nil
			}
		} else {
			fn = exec("curl -sS -o /dev/null -I --max-time 20 -w '%{http_code}' "+url, func(r *pyro.WorkspaceExecResult) (bool, string) {
				code := strings.TrimSpace(r.Stdout)
				if r.ExitCode != 0 || r.TimedOut || code == "" || code == "000" {
					return false, "FAILED: no egress to " + url + ": " + commandFailure(&r.ExecResult)
				}
				return true, fmt.Sprintf("curl -sI %s: HTTP %s", url, code)
			})
		}
		if err := step(fn); err != nil {
			return finish(err)
		}
	}

	// 5. The workspace's persisted history.
	if err := step(func() (bool, string, any, error) {
		l, err := c.LogsWorkspace(ctx, wsID)
		if err != nil {
			return false, "", nil, err
		}
		parts := make([]string, 0, len(l.Entries))
		for _, e := range l.Entries {
			parts = append(parts, fmt.Sprintf("#%d %s -> exit %d", e.Sequence, shortCommand(e.Command), e.ExitCode))
		}
		detail := fmt.Sprintf("%d command(s) logged: %s", l.Count, strings.Join(parts, ", "))
		if l.Count != commands {
			return false, fmt.Sprintf("FAILED: %d command(s) ran but %s", commands, detail), l, nil
		}
		return true, detail, l, nil
	}); err != nil {
		return finish(err)
	}

	// 6. Delete: the VM, its disk and its logs go.
	if err := step(func() (bool, string, any, error) {
		r, err := c.DeleteWorkspace(ctx, wsID)
		if err != nil {
			return false, "", nil, err
		}
		wsID = ""
		if !r.Deleted {
			return false, "FAILED: workspace " + r.WorkspaceID + " was not deleted", r, nil
		}
		return true, "deleted workspace " + r.WorkspaceID + " (VM, disk and logs)", r, nil
	}); err != nil {
		return finish(err)
	}
	return finish(nil)
}

// commandFailure says why a command that ran did not succeed.
func commandFailure(r *pyro.ExecResult) string {
	if r.TimedOut {
		return "timed out: " + r.Message
	}
	s := fmt.Sprintf("exit %d", r.ExitCode)
	if e := firstLine(r.Stderr); e != "" {
		s += ": " + e
	} else if o := firstLine(r.Stdout); o != "" {
		s += ": " + o
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// shortCommand shows a logged command as the user typed it: without the
// /bin/sh -c of shell strings, and cut short.
func shortCommand(argv []string) string {
	s := strings.Join(argv, " ")
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		s = argv[2]
	}
	if len(s) > 40 {
		s, _, _ = strings.Cut(s, " ")
		s += " ..."
	}
	return s
}

// Seconds renders milliseconds the way the demos print durations: "3.1 s".
func Seconds(ms int64) string { return fmt.Sprintf("%.1f s", float64(ms)/1000) }
