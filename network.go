package pyro

import (
	"context"

	"github.com/pyro-mcp/pyro/api"
)

// Network policies and published ports (docs/reference/network.md). The
// types are defined in package api.
type (
	// PublishPort asks for a guest port on the host's loopback, in
	// ServiceStartOptions.PublishedPorts.
	PublishPort = api.PublishPort
	// WorkspaceNetwork is a workspace's network: policy, published ports
	// and connection log.
	WorkspaceNetwork = api.WorkspaceNetwork
	// Connection is one record of a guest's connection log.
	Connection = api.Connection
)

// Network policies, for Shape.NetworkPolicy and
// WorkspaceUpdateOptions.NetworkPolicy.
const (
	NetworkOff            = api.NetworkOff
	NetworkEgress         = api.NetworkEgress
	NetworkEgressPublish  = api.NetworkEgressPublish
	NetworkPublishedPorts = api.NetworkPublishedPorts
	NetworkAllowlist      = api.NetworkAllowlist
)

// WorkspaceNetwork describes a workspace's network: its policy, the ports
// its services published and the recent connections of its guest. Change
// the policy with UpdateWorkspace (NetworkPolicy); publish ports with
// StartService (PublishedPorts).
func (c *Client) WorkspaceNetwork(ctx context.Context, workspaceID string) (*WorkspaceNetwork, error) {
	return c.eng.WorkspaceNetwork(ctx, workspaceID)
}
