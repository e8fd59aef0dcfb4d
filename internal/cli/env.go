package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/catalog"
)

// newEnvCmd wires `pyro env`: the catalog and the local environment cache.
func (a *App) newEnvCmd() *cobra.Command {
	env := &cobra.Command{
		Use:   "env",
		Short: "List, pull, inspect and prune environments",
		Long: `Environments are the curated Debian images guests boot from: ` + strings.Join(catalog.Names(), ", ") + `.
'pyro env pull NAME' installs one into the cache ($PYRO_CACHE_DIR): from the registry in
$PYRO_ENV_REGISTRY (or "env_registry" in the config file) when set and it has it, else by
building it locally with mmdebstrap.`,
	}
	var registry string
	env.PersistentFlags().StringVar(&registry, "registry", "", `registry to pull from, "HOST[:PORT]/prefix" ("none" to always build; default $PYRO_ENV_REGISTRY)`)
	open := func(progress func(catalog.Progress)) (*pyro.Client, error) {
		return pyro.New(&pyro.Options{Registry: registry, Logger: a.logger(), Progress: progress})
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the catalog and what is installed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(nil)
			if err != nil {
				return err
			}
			envs, err := s.ListEnvironments(cmd.Context())
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(pyro.EnvironmentList{CatalogVersion: pyro.CatalogVersion, Environments: envs})
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tINSTALLED\tSIZE\tDESCRIPTION")
			for _, e := range envs {
				inst := "no"
				if e.Installed {
					inst = "yes"
					if e.Outdated {
						inst = "outdated (" + e.InstalledVersion + ")"
					}
				}
				size := "-"
				if e.Installed {
					size = humanBytes(e.DiskBytes)
				}
				name := e.Name
				if e.Default {
					name += " (default)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, e.Version, inst, size, e.Description)
			}
			return tw.Flush()
		},
	}

	var trust catalog.PullOptions
	pull := &cobra.Command{
		Use:   "pull NAME",
		Short: "Install an environment (from the cache, a registry, or a local build)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr := a.newProgressPrinter()
			s, err := open(pr.print)
			if err != nil {
				return err
			}
			// The options travel in the context until the SDK has a pull
			// options argument of its own.
			ctx := catalog.WithPullOptions(cmd.Context(), trust)
			res, err := s.PullEnvironment(ctx, args[0])
			pr.finish()
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "%s %s installed (source: %s)\n", res.Name, res.Version, res.Source)
			return nil
		},
	}

	pull.Flags().StringVar(&trust.ExpectDigest, "expect-digest", "", "install only the registry artifact with this manifest digest (sha256:...); never builds locally")
	pull.Flags().BoolVar(&trust.TrustNewDigest, "trust-new-digest", false, "accept a registry digest other than the one trusted on first use, and trust it from now on")

	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Describe an environment: recipe, packages, blobs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(nil)
			if err != nil {
				return err
			}
			info, err := s.InspectEnvironment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(info)
			}
			w := a.Stdout
			fmt.Fprintf(w, "name:         %s\n", info.Name)
			fmt.Fprintf(w, "version:      %s\n", info.Version)
			fmt.Fprintf(w, "description:  %s\n", info.Description)
			fmt.Fprintf(w, "installed:    %v\n", info.Installed)
			if info.Problem != "" {
				fmt.Fprintf(w, "problem:      %s (run 'pyro env pull %s')\n", info.Problem, info.Name)
			}
			if info.RegistryRef != "" {
				fmt.Fprintf(w, "registry ref: %s\n", info.RegistryRef)
			}
			if m := info.Manifest; m != nil {
				fmt.Fprintf(w, "installed version: %s\n", m.Version)
				fmt.Fprintf(w, "source:       %s %s\n", m.Source.Type, m.Source.Ref)
				fmt.Fprintf(w, "created:      %s\n", m.Created.Format("2006-01-02T15:04:05Z07:00"))
				fmt.Fprintf(w, "kernel:       %s (%s %s)\n", m.KernelVersion, m.KernelPackage.Name, m.KernelPackage.Version)
				fmt.Fprintf(w, "packages:     %d\n", len(m.Packages))
				for _, b := range []struct {
					n string
					b catalog.Blob
				}{{"kernel", m.Blobs.Kernel}, {"modules", m.Blobs.Modules}, {"rootfs", m.Blobs.Rootfs}} {
					fmt.Fprintf(w, "blob %-8s %s %s\n", b.n+":", b.b.Digest, humanBytes(b.b.Size))
				}
			}
			if p := info.Paths; p != nil {
				fmt.Fprintf(w, "kernel path:  %s\nmodules path: %s\nrootfs path:  %s\n", p.KernelPath, p.ModulesPath, p.RootfsPath)
			}
			return nil
		},
	}

	var all bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove stale environments and unreferenced blobs (blobs in use by VMs are kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(nil)
			if err != nil {
				return err
			}
			var removed []string
			if all {
				envs, err := s.ListEnvironments(cmd.Context())
				if err != nil {
					return err
				}
				for _, e := range envs {
					if e.Installed {
						if err := s.RemoveEnvironment(cmd.Context(), e.Name); err != nil {
							return err
						}
						removed = append(removed, e.Name)
					}
				}
			}
			res, err := s.PruneEnvironments(cmd.Context())
			if err != nil {
				return err
			}
			res.RemovedEnvironments = append(removed, res.RemovedEnvironments...)
			if a.JSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "removed %d environment(s), %d blob(s), %d temp dir(s); freed %s; kept %d leased blob(s)\n",
				len(res.RemovedEnvironments), len(res.RemovedBlobs), res.RemovedTemp, humanBytes(res.FreedBytes), len(res.LeasedBlobs))
			for _, e := range res.RemovedEnvironments {
				fmt.Fprintf(a.Stdout, "removed environment %s\n", e)
			}
			return nil
		},
	}
	prune.Flags().BoolVar(&all, "all", false, "also uninstall every installed environment")

	push := &cobra.Command{
		Use:   "push NAME REF",
		Short: "Publish an installed environment to an OCI registry (REF: HOST[:PORT]/repo:tag)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr := a.newProgressPrinter()
			s, err := open(pr.print)
			if err != nil {
				return err
			}
			res, err := s.PushEnvironment(cmd.Context(), args[0], args[1])
			pr.finish()
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "pushed %s to %s (%s)\n", res.Environment, res.Ref, res.Digest)
			return nil
		},
	}
	env.AddCommand(list, pull, inspect, prune, push)
	return env
}

// progressPrinter writes pull/push progress on stderr: one log line per
// phase change, and a redrawn byte bar when stderr is a terminal.
type progressPrinter struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	last    string
	barOpen bool
}

func (a *App) newProgressPrinter() *progressPrinter {
	p := &progressPrinter{w: a.Stderr}
	if f, ok := a.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progressPrinter) print(ev catalog.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := ev.Op + ev.Phase + ev.Step
	if ev.Bytes > 0 && ev.Total > 0 {
		if p.tty {
			width := 30
			done := int(float64(width) * float64(ev.Bytes) / float64(ev.Total))
			done = min(max(done, 0), width)
			fmt.Fprintf(p.w, "\r[%s] %-8s [%s%s] %s / %s ", ev.Op, ev.Step, strings.Repeat("=", done),
				strings.Repeat(" ", width-done), humanBytes(ev.Bytes), humanBytes(ev.Total))
			p.barOpen = true
			return
		}
		// Not a terminal: only the first and last event of each step.
		if key == p.last && ev.Bytes < ev.Total {
			return
		}
	}
	if p.barOpen {
		fmt.Fprintln(p.w)
		p.barOpen = false
	}
	if key == p.last && ev.Bytes == 0 {
		return
	}
	p.last = key
	fmt.Fprintln(p.w, ev.String())
}

func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.barOpen {
		fmt.Fprintln(p.w)
		p.barOpen = false
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
