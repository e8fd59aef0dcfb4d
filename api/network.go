package api

import "time"

// Network policies: the values of Shape.NetworkPolicy, Machine.NetworkPolicy
// and WorkspaceUpdateOptions.NetworkPolicy. Network true is the shorthand
// for NetworkEgress. docs/reference/network.md says what each allows.
const (
	NetworkOff            = "off"
	NetworkEgress         = "egress"
	NetworkEgressPublish  = "egress+published-ports"
	NetworkPublishedPorts = "published-ports"
	NetworkAllowlist      = "allowlist"
)

// PublishPort asks for a guest TCP port to be reachable on the host's
// loopback: ServiceStartOptions.PublishedPorts.
type PublishPort struct {
	GuestPort int `json:"guest_port" jsonschema:"the TCP port the service listens on in the guest (on 0.0.0.0, not 127.0.0.1)"`
	HostPort  int `json:"host_port,omitempty" jsonschema:"the port on the host's 127.0.0.1 (default 0: a free port)"`
}

// WorkspaceNetwork is a workspace's network: its policy, published ports
// and the recent connections of its guest: `pyro workspace network --json`,
// workspace_network.
type WorkspaceNetwork struct {
	WorkspaceID string `json:"workspace_id"`
	Running     bool   `json:"running"`
	// Policy is the recorded policy; Live is the one the running guest's
	// network follows (they differ only while a change waits for a
	// restart).
	Policy       string   `json:"policy"`
	Allow        []string `json:"allow,omitempty"`
	AllowPublish bool     `json:"allow_publish,omitempty"`
	Live         string   `json:"live_policy,omitempty"`
	GuestIP      string   `json:"guest_ip,omitempty"`
	Gateway      string   `json:"gateway,omitempty"`
	DNS          string   `json:"dns,omitempty"`
	// PublishedPorts lists every published port with its service.
	PublishedPorts []PublishedPort `json:"published_ports"`
	// Connections is the bounded log of recent connections, oldest first;
	// ConnectionsTotal counts every record ever written (more once the
	// log has wrapped).
	Connections      []Connection `json:"connections"`
	ConnectionsTotal uint64       `json:"connections_total"`
	BytesOut         uint64       `json:"bytes_out"`
	BytesIn          uint64       `json:"bytes_in"`
	Note             string       `json:"note,omitempty"`
}

// Connection is one record of the connection log: a connection the guest
// opened or tried to open, a name it resolved, or a connection from the
// host to one of its published ports.
type Connection struct {
	Time      time.Time `json:"time"`
	Proto     string    `json:"proto"`     // tcp, udp or dns
	Direction string    `json:"direction"` // out (the guest's) or in (to a published port)
	Addr      string    `json:"addr,omitempty"`
	Port      int       `json:"port,omitempty"`
	Name      string    `json:"name,omitempty"`
	Allowed   bool      `json:"allowed"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error,omitempty"`
	BytesOut  int64     `json:"bytes_out"`
	BytesIn   int64     `json:"bytes_in"`
	Open      bool      `json:"open"`
	Ended     time.Time `json:"ended,omitzero"`
}
