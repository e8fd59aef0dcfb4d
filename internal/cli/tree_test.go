package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// groups walks the whole command tree and returns every command group
// (a command with subcommands), so a group added later is checked too.
func groups(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	if c.HasSubCommands() {
		out = append(out, c)
	}
	for _, sub := range c.Commands() {
		out = append(out, groups(sub)...)
	}
	return out
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb}
	code = a.Run(t.Context(), args)
	return code, out.String(), errb.String()
}

// Every command group refuses an unknown subcommand, a typo and a stray
// argument with the usage exit code, and suggests what was meant.
func TestEveryGroupRejectsTypos(t *testing.T) {
	all := groups(NewRootCommand())
	if len(all) < 6 {
		t.Fatalf("found only %d command groups", len(all))
	}
	for _, g := range all {
		path := strings.Fields(g.CommandPath())[1:] // without "pyro"
		var sub *cobra.Command
		for _, c := range g.Commands() {
			if c.IsAvailableCommand() && len(c.Name()) >= 4 {
				sub = c
				break
			}
		}
		t.Run(strings.Join(append([]string{"pyro"}, path...), "_"), func(t *testing.T) {
			code, stdout, stderr := run(t, append(path, "nosuchcommand")...)
			if code != ExitUsage || !strings.Contains(stderr, `unknown command "nosuchcommand"`) {
				t.Errorf("unknown subcommand: exit %d, stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("unknown subcommand printed on stdout: %q", stdout)
			}
			if sub != nil {
				typo := sub.Name()[:len(sub.Name())-1] + "x" // one letter off
				code, _, stderr = run(t, append(path, typo, "ID", "s1")...)
				if code != ExitUsage || !strings.Contains(stderr, "did you mean") || !strings.Contains(stderr, sub.Name()) {
					t.Errorf("typo %q: exit %d, stderr %q", typo, code, stderr)
				}
			}
			code, stdout, _ = run(t, append(path, "--json", "nosuchcommand")...)
			var e ErrorJSON
			if code != ExitUsage || json.Unmarshal([]byte(stdout), &e) != nil || e.Error.Code != "invalid_argument" {
				t.Errorf("--json: exit %d, stdout %q", code, stdout)
			}
		})
	}
}

// Every leaf command says how many arguments it takes, and refuses a
// stray one with the usage exit code when it takes none.
func TestEveryLeafChecksItsArguments(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.HasSubCommands() || !c.Runnable() || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.Args == nil {
			t.Errorf("%s accepts any arguments: give it an Args check", c.CommandPath())
		}
	}
	walk(NewRootCommand())
	for _, args := range [][]string{{"doctor", "extra"}, {"vm", "list", "extra"}, {"env", "list", "extra"}, {"workspace", "sync", "push", "only-one"}} {
		if code, _, stderr := run(t, args...); code != ExitUsage {
			t.Errorf("pyro %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
	}
}

// A group alone still shows its help and succeeds.
func TestGroupAloneShowsHelp(t *testing.T) {
	code, stdout, _ := run(t, "workspace")
	if code != 0 || !strings.Contains(stdout, "Available Commands") {
		t.Errorf("pyro workspace: exit %d, stdout %q", code, stdout)
	}
}
