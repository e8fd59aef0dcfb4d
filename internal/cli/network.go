package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Network policies (--network-policy, --allow, --allow-publish on run, vm
// create, workspace create and workspace update), --publish of service
// start, and `pyro workspace network`.

const networkPolicyUsage = "off (default: no network device), egress, egress+published-ports, published-ports or allowlist (with --allow)"

// registerNetworkFlags adds the policy flags that fill a shape.
func registerNetworkFlags(cmd *cobra.Command, policy *string, allow *[]string, allowPublish *bool) {
	cmd.Flags().StringVar(policy, "network-policy", "", "the guest's network: "+networkPolicyUsage)
	cmd.Flags().StringArrayVar(allow, "allow", nil, "with --network-policy allowlist: a destination HOST[:PORT] or CIDR[:PORT] (repeatable)")
	cmd.Flags().BoolVar(allowPublish, "allow-publish", false, "with --network-policy allowlist: services may publish ports too")
}

// parsePublish reads --publish [HOST_PORT:]GUEST_PORT values.
func parsePublish(vals []string) ([]pyro.PublishPort, error) {
	var out []pyro.PublishPort
	for _, v := range vals {
		host, guest, ok := strings.Cut(v, ":")
		if !ok {
			host, guest = "0", v
		}
		hp, err1 := strconv.Atoi(host)
		gp, err2 := strconv.Atoi(guest)
		if err1 != nil || err2 != nil || gp < 1 || gp > 65535 || hp < 0 || hp > 65535 {
			return nil, usageErr(errdefs.New(errdefs.ErrInvalidArgument,
				"use --publish GUEST_PORT or --publish HOST_PORT:GUEST_PORT, ports from 1 to 65535 (HOST_PORT 0: a free port)",
				"invalid --publish %q", v))
		}
		out = append(out, pyro.PublishPort{GuestPort: gp, HostPort: hp})
	}
	return out, nil
}

// wsNetworkCmd is `pyro workspace network WORKSPACE`.
func (a *App) wsNetworkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "network WORKSPACE",
		Short: "Show a workspace's network policy, published ports and recent connections",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := call(a, clientOptions{quiet: true}, func(c *pyro.Client) (*pyro.WorkspaceNetwork, error) {
				return c.WorkspaceNetwork(cmd.Context(), args[0])
			})
			if err != nil {
				return err
			}
			if a.JSON {
				return a.printJSON(n)
			}
			return a.printNetwork(n)
		},
	}
}

func (a *App) printNetwork(n *pyro.WorkspaceNetwork) error {
	if n.Note != "" {
		fmt.Fprintf(a.Stderr, "[network] %s\n", n.Note)
	}
	policy := n.Policy
	if len(n.Allow) > 0 {
		policy += " " + strings.Join(n.Allow, ", ")
	}
	if n.AllowPublish {
		policy += " (publishing allowed)"
	}
	fmt.Fprintf(a.Stdout, "policy: %s\n", policy)
	if n.GuestIP != "" {
		fmt.Fprintf(a.Stdout, "guest: %s gateway %s dns %s\n", n.GuestIP, n.Gateway, n.DNS)
	}
	tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	if len(n.PublishedPorts) > 0 {
		fmt.Fprintln(tw, "\nSERVICE\tGUEST_PORT\tHOST")
		for _, p := range n.PublishedPorts {
			fmt.Fprintf(tw, "%s\t%d\t%s:%d\n", p.Service, p.GuestPort, p.HostAddress, p.HostPort)
		}
	}
	if len(n.Connections) > 0 {
		fmt.Fprintf(tw, "\nTIME\tPROTO\tDIR\tDESTINATION\tVERDICT\tBYTES_OUT\tBYTES_IN\tREASON\n")
		for _, c := range n.Connections {
			dst := c.Addr
			if c.Port != 0 {
				dst += ":" + strconv.Itoa(c.Port)
			}
			if c.Name != "" {
				dst = c.Name + " " + dst
			}
			verdict := "allowed"
			if !c.Allowed {
				verdict = "refused"
			}
			reason := c.Reason
			if c.Error != "" {
				reason += "; " + c.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", c.Time.Format("15:04:05.000"), c.Proto, c.Direction, dst, verdict,
				c.BytesOut, c.BytesIn, reason)
		}
	}
	return tw.Flush()
}
