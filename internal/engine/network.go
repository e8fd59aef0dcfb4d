package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// The guest's network policy is decided by internal/netpolicy and carried
// out by the network stack in the workspace's supervisor (vmm.Networked).
// The engine records the policy, checks what a backend can enforce, and
// talks to the supervisor's network control socket (supervisor/netctl.go)
// to show the network, change its policy live and publish ports.

// netSockName is the network control socket in a VM's runtime directory.
const netSockName = "net.sock"

// shapePolicy checks the network part of a shape; its mode becomes
// the canonical name. Network true alone is the
// shorthand for egress.
func shapePolicy(s *api.Shape) (netpolicy.Policy, error) {
	mode := strings.TrimSpace(s.NetworkPolicy)
	if mode == "" {
		if len(s.Allow) > 0 || s.AllowPublish {
			return netpolicy.Policy{}, errdefs.New(errdefs.ErrInvalidArgument, "add --network-policy allowlist (MCP and SDKs: `network_policy`)",
				"--allow and --allow-publish need the allowlist network policy")
		}
		if s.Network {
			return netpolicy.Egress(), nil
		}
		return netpolicy.Off(), nil
	}
	p, err := netpolicy.New(mode, s.Allow, s.AllowPublish)
	if err != nil {
		return netpolicy.Policy{}, err
	}
	if s.Network && p.Mode != netpolicy.ModeEgress {
		return netpolicy.Policy{}, errdefs.New(errdefs.ErrInvalidArgument, "--network is the shorthand for --network-policy egress: give one or the other",
			"--network contradicts --network-policy %s", p.Mode)
	}
	s.NetworkPolicy = string(p.Mode)
	return p, nil
}

// checkBackendPolicy refuses a policy the chosen backend cannot enforce:
// only QEMU guests run pyro's network stack. --network alone keeps its
// 2.4 meaning everywhere (see docs/reference/network.md).
func checkBackendPolicy(mode string, kind vmm.Kind, s api.Shape) error {
	if s.NetworkPolicy == "" || s.NetworkPolicy == api.NetworkOff {
		return nil
	}
	backend := ""
	switch {
	case mode == api.ModeHostCompat:
		backend = "host_compat"
	case kind == vmm.KindFirecracker:
		backend = "firecracker"
	default:
		return nil
	}
	return errdefs.New(errdefs.ErrFailedPrecondition,
		"use the QEMU backend (--backend qemu) for network policies, or --network-policy off",
		"the %s backend cannot enforce network policy %s", backend, s.NetworkPolicy)
}

// setPolicy records p on the machine.
func setPolicy(m *api.Machine, p netpolicy.Policy) {
	m.NetworkPolicy, m.Network, m.AllowPublish, m.NetworkAllow = string(p.Mode), p.NIC(), p.AllowPublish, nil
	for _, r := range p.Allow {
		m.NetworkAllow = append(m.NetworkAllow, r.String())
	}
}

// netPolicy is the recorded policy; records of pyro 2.4 have none, and
// their network bool reads as egress or off.
func (r *vmRecord) netPolicy() netpolicy.Policy {
	if r.NetworkPolicy == "" {
		if r.Network {
			return netpolicy.Egress()
		}
		return netpolicy.Off()
	}
	p, err := netpolicy.New(r.NetworkPolicy, r.NetworkAllow, r.AllowPublish)
	if err != nil {
		return netpolicy.Off() // a record pyro did not write: no network
	}
	return p
}

// netPolicySpec is the policy for the machine spec: none for a record
// without one, whose spec's Network says it.
func (r *vmRecord) netPolicySpec() netpolicy.Policy {
	if r.NetworkPolicy == "" {
		return netpolicy.Policy{}
	}
	return r.netPolicy()
}

// netCall sends one request to rec's network control socket.
func (e *Engine) netCall(ctx context.Context, rec *vmRecord, req supervisor.NetRequest) (*supervisor.NetReply, error) {
	ctx, cancel := context.WithTimeout(ctx, guestCallTimeout())
	defer cancel()
	return supervisor.NetCall(ctx, filepath.Join(e.runDir(rec.ID), netSockName), req)
}

// WorkspaceNetwork describes a workspace's network: its policy, published
// ports and the recent connections of its guest.
func (e *Engine) WorkspaceNetwork(ctx context.Context, ref string) (*api.WorkspaceNetwork, error) {
	defer e.enter()()
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	p := rec.netPolicy()
	out := &api.WorkspaceNetwork{WorkspaceID: rec.ID, Policy: string(p.Mode), AllowPublish: p.AllowPublish,
		PublishedPorts: []api.PublishedPort{}, Connections: []api.Connection{}}
	for _, r := range p.Allow {
		out.Allow = append(out.Allow, r.String())
	}
	out.Running = e.alive(rec)
	switch {
	case !out.Running && rec.Workspace != nil && rec.Workspace.Suspended != nil && len(rec.Workspace.Ports) > 0:
		out.Note = "the workspace is suspended: its services' published ports are bound again when it resumes, and its connection log starts again"
		return out, nil
	case !out.Running:
		out.Note = "the workspace is not running: it has no published ports and its connection log starts again at its next start"
		return out, nil
	case !p.NIC():
		out.Note = "the guest has no network device"
		if rec.ExecutionMode != api.ModeHostCompat {
			// A policy turned off by update: the stack may still run.
			if rep, err := e.netCall(ctx, rec, supervisor.NetRequest{Op: supervisor.NetOpInfo}); err == nil {
				fillNetwork(out, rep)
				out.Note = "the guest keeps its network device until it is restarted"
			}
		}
		return out, nil
	}
	rep, err := e.netCall(ctx, rec, supervisor.NetRequest{Op: supervisor.NetOpInfo})
	if err != nil {
		if errdefs.ClassOf(err) == errdefs.ErrUnavailable {
			out.Note = "this guest's network is not pyro's network stack (host_compat, firecracker or PYRO_NET_BACKEND): no connection log"
			return out, nil
		}
		return nil, err
	}
	fillNetwork(out, rep)
	return out, nil
}

func fillNetwork(out *api.WorkspaceNetwork, rep *supervisor.NetReply) {
	if i := rep.Info; i != nil {
		ip, _, _ := strings.Cut(i.GuestIP, "/")
		out.Live, out.GuestIP, out.Gateway, out.DNS = i.Policy.String(), ip, i.Gateway, i.DNS
		out.BytesOut, out.BytesIn = i.BytesOut, i.BytesIn
		if out.Live != out.Policy && out.Note == "" {
			out.Note = "the recorded policy takes effect at the next start"
		}
	}
	out.PublishedPorts = publishedView(rep.Ports, "")
	out.ConnectionsTotal = rep.LogTotal
	for _, r := range rep.Log {
		out.Connections = append(out.Connections, api.Connection{Time: r.Time, Proto: r.Proto, Direction: r.Direction, Addr: r.Addr,
			Port: int(r.Port), Name: r.Name, Allowed: r.Allowed, Reason: r.Reason, Error: r.Error, BytesOut: r.BytesOut,
			BytesIn: r.BytesIn, Open: r.Open, Ended: r.Ended})
	}
}

// publishedView lists ports as the API shows them: every port, or an
// owner's.
func publishedView(ports []supervisor.NetPort, owner string) []api.PublishedPort {
	out := []api.PublishedPort{}
	for _, p := range ports {
		if owner != "" && p.Owner != owner {
			continue
		}
		v := api.PublishedPort{GuestPort: int(p.GuestPort), HostAddress: p.HostAddress, HostAddressV6: p.HostAddressV6,
			HostPort: int(p.HostPort), Protocol: "tcp"}
		if owner == "" {
			v.Service = p.Owner
		}
		out = append(out, v)
	}
	return out
}

// updatePolicy checks the network part of an update: nil when it
// changes no policy.
func updatePolicy(o api.WorkspaceUpdateOptions) (*netpolicy.Policy, error) {
	if o.NetworkPolicy == "" && len(o.Allow) == 0 && !o.AllowPublish {
		return nil, nil
	}
	if o.NetworkPolicy == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "add --network-policy allowlist (MCP and SDKs: `network_policy`)",
			"--allow and --allow-publish need the allowlist network policy")
	}
	p, err := netpolicy.New(o.NetworkPolicy, o.Allow, o.AllowPublish)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// updateNetwork is UpdateWorkspace's network part, under the record's
// lock: the new policy is applied live when the guest runs and both
// policies give it a network device, then recorded. It returns a note for
// what waits for the next start.
func (e *Engine) updateNetwork(ctx context.Context, rec *vmRecord, p netpolicy.Policy) (string, error) {
	if err := checkBackendPolicy(rec.ExecutionMode, vmm.Kind(rec.BackendKind), api.Shape{NetworkPolicy: string(p.Mode)}); err != nil {
		return "", err
	}
	old := rec.netPolicy()
	note := ""
	switch {
	case !e.alive(rec) && rec.Workspace != nil && rec.Workspace.Suspended != nil && old.NIC() != p.NIC():
		note = fmt.Sprintf("network policy %s takes effect at the workspace's next start, which boots it afresh: its suspended processes end (a saved guest's network device cannot be added or removed)", p.Mode)
	case !e.alive(rec):
	case !old.NIC() || !p.NIC():
		note = fmt.Sprintf("network policy %s takes effect at the workspace's next start (stop and start it; that stop powers the guest off, ending its processes): a running guest's network device cannot be added or removed", p.Mode)
	default:
		if _, err := e.netCall(ctx, rec, supervisor.NetRequest{Op: supervisor.NetOpSetPolicy, Policy: &p}); err != nil {
			if errdefs.ClassOf(err) != errdefs.ErrUnavailable {
				return "", err
			}
			note = fmt.Sprintf("network policy %s takes effect at the workspace's next start", p.Mode)
		}
	}
	setPolicy(&rec.Machine, p)
	if rec.Workspace != nil && !p.Publish() {
		rec.Workspace.Ports = nil // released by the live change, or never bound again
	}
	return note, nil
}

// checkPorts refuses bad published ports before anything is looked up.
func checkPorts(ports []api.PublishPort) error {
	seen := map[int]bool{}
	for _, p := range ports {
		if p.GuestPort < 1 || p.GuestPort > 65535 || p.HostPort < 0 || p.HostPort > 65535 {
			return errdefs.New(errdefs.ErrInvalidArgument, "use --publish [HOST_PORT:]GUEST_PORT with ports from 1 to 65535 (HOST_PORT 0: a free port)",
				"published port %d:%d is out of range", p.HostPort, p.GuestPort)
		}
		if seen[p.GuestPort] {
			return errdefs.New(errdefs.ErrInvalidArgument, "publish each guest port once", "guest port %d is published twice", p.GuestPort)
		}
		seen[p.GuestPort] = true
	}
	return nil
}

// checkPublish refuses publishing before a service starts: a backend or a
// policy that does not allow it.
func checkPublish(rec *vmRecord, ports []api.PublishPort) error {
	if len(ports) == 0 {
		return nil
	}
	if rec.ExecutionMode == api.ModeHostCompat || vmm.Kind(rec.BackendKind) == vmm.KindFirecracker {
		return errdefs.New(errdefs.ErrFailedPrecondition, "use a workspace on the QEMU backend to publish ports",
			"workspace %s runs on a backend that cannot publish ports", rec.ID)
	}
	if p := rec.netPolicy(); !p.Publish() {
		return errdefs.New(errdefs.ErrFailedPrecondition,
			fmt.Sprintf("change the policy first: pyro workspace update %s --network-policy egress+published-ports (or published-ports)", rec.ID[:12]),
			"network policy %s of workspace %s does not allow publishing ports", p.Mode, rec.ID)
	}
	return nil
}

// publish publishes a started service's ports; on an error, none stays.
func (e *Engine) publish(ctx context.Context, rec *vmRecord, service string, ports []api.PublishPort) ([]api.PublishedPort, error) {
	var rep *supervisor.NetReply
	for _, p := range ports {
		r, err := e.netCall(ctx, rec, supervisor.NetRequest{Op: supervisor.NetOpPublish, Owner: service,
			GuestPort: uint16(p.GuestPort), HostPort: uint16(p.HostPort)})
		if err != nil {
			e.unpublish(ctx, rec, service)
			return nil, err
		}
		rep = r
	}
	if rep == nil {
		return []api.PublishedPort{}, nil
	}
	e.keepPorts(ctx, rec.ID, service, boundPorts(rep, service))
	return publishedView(rep.Ports, service), nil
}

// unpublish releases a service's ports, if its workspace runs, and
// forgets them in its record. The caller holds no lock on rec.
func (e *Engine) unpublish(ctx context.Context, rec *vmRecord, service string) {
	if _, err := e.netCall(context.WithoutCancel(ctx), rec, supervisor.NetRequest{Op: supervisor.NetOpUnpublish, Owner: service}); err != nil &&
		errdefs.ClassOf(err) != errdefs.ErrUnavailable {
		e.log.Warn("releasing published ports", "workspace", rec.ID, "service", service, "err", err)
	}
	e.keepPorts(ctx, rec.ID, service, nil)
}

// servicePorts returns the published ports of a running workspace by
// service, releasing those of services that no longer run. Without a
// network stack it is empty.
func (e *Engine) servicePorts(ctx context.Context, rec *vmRecord, running func(service string) bool) map[string][]api.PublishedPort {
	if rec.ExecutionMode == api.ModeHostCompat {
		return nil
	}
	rep, err := e.netCall(ctx, rec, supervisor.NetRequest{Op: supervisor.NetOpInfo})
	if err != nil {
		return nil
	}
	out := map[string][]api.PublishedPort{}
	gone := map[string]bool{}
	for _, v := range publishedView(rep.Ports, "") {
		s := v.Service
		if !running(s) {
			gone[s] = true
			continue
		}
		v.Service = ""
		out[s] = append(out[s], v)
	}
	for s := range gone {
		e.unpublish(ctx, rec, s)
	}
	return out
}
