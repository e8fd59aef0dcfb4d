package agentproto

import (
	"context"
	"fmt"

	"github.com/pyro-mcp/pyro/internal/version"
)

// A guest started from saved memory (a template's clone, a suspended
// workspace) wakes up with the clock, the kernel's random state and the
// hostname of the moment it was saved. These two methods bracket that:
// MethodQuiesce prepares a guest to be saved, MethodIdentity is the first
// thing the host sends after the restore, before any command.
const (
	// MethodQuiesce: params QuiesceRequest; result QuiesceResult. The
	// guest syncs and freezes Mounts (FIFREEZE: each filesystem is
	// flushed and consistent on disk), answers, and stays frozen until
	// MethodIdentity thaws it or TimeoutMs passes. With Template set it
	// also refuses every request but ping and identity until identity
	// arrives: a clone never runs a command as the template.
	MethodQuiesce = "quiesce"
	// MethodIdentity: params IdentityRequest; result IdentityResult.
	MethodIdentity = "identity"
)

// QuiesceRequest names the mounts to freeze before a save.
type QuiesceRequest struct {
	Mounts    []string `json:"mounts"`
	TimeoutMs int64    `json:"timeout_ms,omitempty"` // the guest thaws on its own past it
	Template  bool     `json:"template,omitempty"`
}

// QuiesceResult says what was frozen.
type QuiesceResult struct {
	Frozen []string `json:"frozen"`
}

// IdentityRequest gives a restored guest what is its own. Zero fields are
// left as they are (a resumed workspace keeps its hostname and disks).
type IdentityRequest struct {
	// Entropy is host random bytes credited to the kernel's pool
	// (RNDADDENTROPY), after which the guest's CRNG is reseeded
	// (RNDRESEEDCRNG): two clones never share a random stream.
	Entropy []byte `json:"entropy"`
	// UnixNano is the host's clock when the request was sent.
	UnixNano int64  `json:"unix_nano"`
	Hostname string `json:"hostname,omitempty"`
	// MachineID is written to /etc/machine-id (32 hex digits).
	MachineID string `json:"machine_id,omitempty"`
	// Disks are the pyro_wsdisk, pyro_basedisk and pyro_wschown kernel
	// arguments a cold boot would have had: the guest drops its block
	// caches of those drives (the template saw placeholders) and mounts
	// them.
	Disks string `json:"disks,omitempty"`
}

// IdentityResult reports what the guest changed.
type IdentityResult struct {
	// ClockStepMs is how far the guest's clock moved forward (the age of
	// the saved state, roughly).
	ClockStepMs int64 `json:"clock_step_ms"`
	Thawed      int   `json:"thawed"`
	TookMs      int64 `json:"took_ms"`
}

// Quiesce freezes the guest for a save.
func (c *Client) Quiesce(ctx context.Context, req QuiesceRequest) (*QuiesceResult, error) {
	var res QuiesceResult
	if _, err := c.call(ctx, MethodQuiesce, req, &res, nil, false, nil, nil, 0); err != nil {
		return nil, err
	}
	return &res, nil
}

// Identity gives a restored guest its own identity.
func (c *Client) Identity(ctx context.Context, req IdentityRequest) (*IdentityResult, error) {
	var res IdentityResult
	if _, err := c.call(ctx, MethodIdentity, req, &res, nil, false, nil, nil, 0); err != nil {
		return nil, err
	}
	return &res, nil
}

// AgentVersion is what a separate agent binary prints for --version: the
// release and the protocol it speaks. A pyro uses an agent beside it only
// when the line equals its own.
func AgentVersion() string {
	return fmt.Sprintf("pyro-agent %s proto %d", version.Version, Version)
}
