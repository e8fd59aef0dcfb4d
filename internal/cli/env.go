package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
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
	quiet := func() clientOptions { return clientOptions{registry: registry, quiet: true} }

	list := &cobra.Command{
		Use:   "list",
		Short: "List the catalog and what is installed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			envs, err := call(a, quiet(), func(c *pyro.Client) ([]pyro.Environment, error) { return c.ListEnvironments(cmd.Context()) })
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
					size = api.HumanBytes(e.DiskBytes)
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
			// The trust options travel in the context (catalog.WithPullOptions).
			ctx := catalog.WithPullOptions(cmd.Context(), trust)
			res, err := call(a, clientOptions{registry: registry}, func(c *pyro.Client) (*pyro.PullResult, error) {
				return c.PullEnvironment(ctx, args[0])
			})
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
		Short: "Describe an environment: recipe, packages, blobs, and what its VMs and workspaces occupy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := call(a, quiet(), func(c *pyro.Client) (*pyro.EnvironmentInfo, error) {
				return c.InspectEnvironment(cmd.Context(), args[0])
			})
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
					b api.Blob
				}{{"kernel", m.Blobs.Kernel}, {"modules", m.Blobs.Modules}, {"rootfs", m.Blobs.Rootfs}} {
					fmt.Fprintf(w, "blob %-8s %s %s\n", b.n+":", b.b.Digest, api.HumanBytes(b.b.Size))
				}
			}
			if p := info.Paths; p != nil {
				fmt.Fprintf(w, "kernel path:  %s\nmodules path: %s\nrootfs path:  %s\n", p.KernelPath, p.ModulesPath, p.RootfsPath)
			}
			if u := info.Usage; u != nil {
				fmt.Fprintf(w, "in use by:    %d VM(s), %d workspace(s)\n", u.VMs, u.Workspaces)
				fmt.Fprintf(w, "their disks:  %s written, %s in %d snapshot and seed layer(s)\n", api.HumanBytes(u.DiskBytes), api.HumanBytes(u.SnapshotBytes), u.Layers)
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
			res, err := call(a, quiet(), func(c *pyro.Client) (*pyro.PruneResult, error) {
				var removed []string
				if all {
					envs, err := c.ListEnvironments(cmd.Context())
					if err != nil {
						return nil, err
					}
					for _, e := range envs {
						if e.Installed {
							if err := c.RemoveEnvironment(cmd.Context(), e.Name); err != nil {
								return nil, err
							}
							removed = append(removed, e.Name)
						}
					}
				}
				res, err := c.PruneEnvironments(cmd.Context())
				if err != nil {
					return nil, err
				}
				res.RemovedEnvironments = append(removed, res.RemovedEnvironments...)
				return res, nil
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "removed %d environment(s), %d blob(s), %d temp dir(s); freed %s; kept %d leased blob(s)\n",
				len(res.RemovedEnvironments), len(res.RemovedBlobs), res.RemovedTemp, api.HumanBytes(res.FreedBytes), len(res.LeasedBlobs))
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
			res, err := call(a, clientOptions{registry: registry}, func(c *pyro.Client) (*pyro.PushResult, error) {
				return c.PushEnvironment(cmd.Context(), args[0], args[1])
			})
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
