package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Names, labels and secrets of workspaces on the command line.

// livingFlags are workspace create's --name, --label, --secret and
// --secret-file.
type livingFlags struct {
	name        string
	labels      []string
	secrets     []string
	secretFiles []string
}

func (f *livingFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "a unique name that works wherever the workspace's id does")
	cmd.Flags().StringArrayVar(&f.labels, "label", nil, "a KEY=VALUE label to find it by (repeatable)")
	cmd.Flags().StringArrayVar(&f.secrets, "secret", nil, "a secret NAME=VALUE, delivered under /run/pyro-secrets and redacted from all output (repeatable)")
	cmd.Flags().StringArrayVar(&f.secretFiles, "secret-file", nil, "a secret NAME=PATH read from a host file (repeatable)")
}

// apply puts the flags into a create's options.
func (f *livingFlags) apply(o *pyro.CreateWorkspaceOptions) error {
	o.Name = f.name
	labels, err := keyValues("--label", f.labels)
	if err != nil {
		return err
	}
	o.Labels = labels
	for _, s := range f.secrets {
		name, value, ok := strings.Cut(s, "=")
		if !ok {
			return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give --secret NAME=VALUE, or --secret-file NAME=PATH to keep the value off the command line",
				"--secret %q has no value", name))
		}
		o.Secrets = append(o.Secrets, pyro.Secret{Name: name, Value: value})
	}
	for _, s := range f.secretFiles {
		name, path, ok := strings.Cut(s, "=")
		if !ok || path == "" {
			return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give --secret-file NAME=PATH", "--secret-file %q has no path", s))
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		o.Secrets = append(o.Secrets, pyro.Secret{Name: name, FilePath: abs})
	}
	return nil
}

// keyValues parses repeated KEY=VALUE flags.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr(errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("give %s KEY=VALUE", flag), "%s %q is not KEY=VALUE", flag, kv))
		}
		out[k] = v
	}
	return out, nil
}

// secretEnvFlag is --secret-env SECRET[=VAR], repeatable.
type secretEnvFlag []string

func (f *secretEnvFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar((*[]string)(f), "secret-env", nil, "expose the workspace's secret SECRET as the environment variable VAR (default: SECRET) (repeatable)")
}

func (f secretEnvFlag) parse() (map[string]string, error) {
	if len(f) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range f {
		secret, v, _ := strings.Cut(s, "=")
		if secret == "" {
			return nil, usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give --secret-env SECRET or SECRET=VAR", "--secret-env %q names no secret", s))
		}
		out[secret] = v
	}
	return out, nil
}

func (a *App) wsUpdateCmd() *cobra.Command {
	var o pyro.WorkspaceUpdateOptions
	var labels []string
	cmd := &cobra.Command{
		Use:   "update WORKSPACE [--name NAME] [--label KEY=VALUE]... [--clear-label KEY]... [--ttl-seconds N]",
		Short: "Rename a workspace, set or clear its labels, or move its expiry",
		Example: `  pyro workspace update 0f3a --name api-fix --label ticket=123
  pyro workspace update api-fix --ttl-seconds 7200`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Labels, err = keyValues("--label", labels); err != nil {
				return err
			}
			if cmd.Flags().Changed("ttl-seconds") && o.TTLSeconds <= 0 {
				return usageErr(errdefs.New(errdefs.ErrInvalidArgument, "give a positive number", "--ttl-seconds %d is out of range", o.TTLSeconds))
			}
			w, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.Workspace, error) {
				return c.UpdateWorkspace(cmd.Context(), args[0], o)
			})
			if err != nil {
				return err
			}
			return a.printResult(w)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "the new name")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set a KEY=VALUE label (repeatable)")
	cmd.Flags().StringArrayVar(&o.ClearLabels, "clear-label", nil, "remove the label KEY (repeatable)")
	cmd.Flags().IntVar(&o.TTLSeconds, "ttl-seconds", 0, "expire this many seconds from now")
	return cmd
}

// wsListCmd is `pyro workspace list [--label KEY=VALUE]...`.
func (a *App) wsListCmd() *cobra.Command {
	var labels []string
	t := workspaceTable
	t.list = func(c *pyro.Client, ctx context.Context) ([]*pyro.Workspace, error) {
		l, err := keyValues("--label", labels)
		if err != nil {
			return nil, err
		}
		return c.ListWorkspacesWith(ctx, &pyro.WorkspaceListOptions{Labels: l})
	}
	cmd := listCmd(a, t)
	cmd.Use = "list [--label KEY=VALUE]..."
	cmd.Short = "List workspaces, the most recently active first"
	cmd.Flags().StringArrayVar(&labels, "label", nil, "only those with the label KEY=VALUE (repeatable)")
	return cmd
}

// idArgs2 builds `VERB WORKSPACE NAME`: one call on one shell or service.
func idArgs2[T any](a *App, use, short string, do func(*pyro.Client, context.Context, string, string) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (T, error) { return do(c, cmd.Context(), args[0], args[1]) })
			if err != nil {
				return err
			}
			return a.printResult(v)
		},
	}
}

// eventText describes a shell or service event of the log ("" for a command).
func eventText(le pyro.LogEntry) string {
	switch {
	case le.ShellID != "":
		return le.Kind + " " + le.ShellID
	case le.Service != "":
		s := le.Kind + " " + le.Service
		if len(le.Command) > 0 {
			s += ": " + strings.Join(le.Command, " ")
		}
		return s
	}
	return ""
}
