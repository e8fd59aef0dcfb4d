package mcpserver

import (
	"fmt"

	"github.com/pyro-mcp/pyro/api"
)

// NetworkPolicyArgs change a workspace's network policy (workspace_update).
type NetworkPolicyArgs struct {
	NetworkPolicy string   `json:"network_policy,omitempty" jsonschema:"a new network policy: off, egress, egress+published-ports, published-ports or allowlist (with allow); live when the guest keeps a network device, else at its next start"`
	Allow         []string `json:"allow,omitempty" jsonschema:"for network_policy allowlist: the only destinations, HOST[:PORT] or CIDR[:PORT]"`
	AllowPublish  bool     `json:"allow_publish,omitempty" jsonschema:"for network_policy allowlist: services may publish ports too"`
}

// registerNetwork adds workspace_network.
func (s *Server) registerNetwork() {
	e := s.eng
	addTool(s, toolDef{
		name: "workspace_network", title: "Show a workspace's network", hints: readOnly,
		desc: `Show a workspace's network: its policy, the guest's address, the ports its services published on the host's 127.0.0.1 ` +
			`(service_start published_ports), and the recent connections its guest made or tried (destination, allowed or refused and why, bytes).`,
	}, onWorkspace(e.WorkspaceNetwork), func(n *api.WorkspaceNetwork) string {
		return fmt.Sprintf("workspace %s network: policy=%s published=%d connections=%d\n%s", n.WorkspaceID, n.Policy,
			len(n.PublishedPorts), len(n.Connections), jsonText(n))
	})
}
