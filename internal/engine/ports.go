package engine

// Published ports outlive a suspend. The supervisor that forwards them
// exits with a suspended machine while the services run on in its saved
// memory, so each service's ports (the host port each one got) are kept
// in the workspace's record, and bound again when the workspace resumes:
// rebindPorts, where every boot completes (startLocked). A cold boot
// forgets them with the services that published them.

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/supervisor"
)

// setPorts sets service's published ports in ws (none: forgets them) and
// says whether that changed anything.
func setPorts(ws *wsState, service string, ports []api.PublishPort) bool {
	old, had := ws.Ports[service]
	if len(ports) == 0 {
		if !had {
			return false
		}
		delete(ws.Ports, service)
		if len(ws.Ports) == 0 {
			ws.Ports = nil
		}
		return true
	}
	if had && slices.Equal(old, ports) {
		return false
	}
	if ws.Ports == nil {
		ws.Ports = map[string][]api.PublishPort{}
	}
	ws.Ports[service] = slices.Clone(ports)
	return true
}

// keepPorts records service's bound ports in workspace id's record, under
// its lock; the caller holds no lock on it. A failure costs the ports
// after a resume only: it is logged.
func (e *Engine) keepPorts(ctx context.Context, id, service string, ports []api.PublishPort) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stretch(30*time.Second))
	defer cancel()
	lock, err := e.wss.LockContext(lctx, id)
	if err != nil {
		e.log.Warn("recording published ports", "workspace_id", id, "service", service, "err", err)
		return
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil || rec.Workspace == nil {
		return
	}
	if !setPorts(rec.Workspace, service, ports) {
		return
	}
	if err := e.wss.Write(id, &rec); err != nil {
		e.log.Warn("recording published ports", "workspace_id", id, "service", service, "err", err)
	}
}

// boundPorts are service's ports in rep, as requests for the same host
// ports.
func boundPorts(rep *supervisor.NetReply, service string) []api.PublishPort {
	var out []api.PublishPort
	for _, p := range rep.Ports {
		if p.Owner == service {
			out = append(out, api.PublishPort{GuestPort: int(p.GuestPort), HostPort: int(p.HostPort)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GuestPort < out[j].GuestPort })
	return out
}

// rebindPorts finishes a workspace's boot under its lock (the caller
// writes rec): after a resume, every recorded service that still runs
// gets its ports again, on the same host ports when they are still free
// and on free ones otherwise (with a warning); the ports of a service
// that no longer runs are released. After a cold boot none are left.
func (e *Engine) rebindPorts(ctx context.Context, rec *vmRecord) {
	ws := rec.Workspace
	if ws == nil || len(ws.Ports) == 0 {
		return
	}
	saved := ws.Ports
	ws.Ports = nil
	if rec.Start != startResume {
		return // its services ended with the machine
	}
	if p := rec.netPolicy(); !p.Publish() {
		e.log.Info("published ports released: the network policy no longer allows them", "workspace_id", rec.ID, "policy", p.Mode)
		return
	}
	running, err := e.runningServices(ctx, rec)
	if err != nil {
		e.log.Warn("published ports not bound again after the resume: restart their services with --publish", "workspace_id", rec.ID, "err", err)
		return
	}
	services := make([]string, 0, len(saved))
	for s := range saved {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, s := range services {
		if !running[s] {
			e.log.Info("published ports released: the service no longer runs", "workspace_id", rec.ID, "service", s)
			continue
		}
		var bound []api.PublishPort
		for _, p := range saved[s] {
			if hp, ok := e.rebindPort(ctx, rec, s, p); ok {
				bound = append(bound, api.PublishPort{GuestPort: p.GuestPort, HostPort: hp})
			}
		}
		setPorts(ws, s, bound)
	}
}

// rebindPort publishes one of service's ports again: on its old host port,
// or on a free one when that is taken now.
func (e *Engine) rebindPort(ctx context.Context, rec *vmRecord, service string, p api.PublishPort) (int, bool) {
	req := supervisor.NetRequest{Op: supervisor.NetOpPublish, Owner: service, GuestPort: uint16(p.GuestPort), HostPort: uint16(p.HostPort)}
	rep, err := e.netCall(ctx, rec, req)
	if err != nil && p.HostPort != 0 {
		req.HostPort = 0
		if rep, err = e.netCall(ctx, rec, req); err == nil {
			hp := hostPortOf(rep, p.GuestPort)
			e.log.Warn("published port moved: its host port was taken while the workspace was suspended", "workspace_id", rec.ID,
				"service", service, "guest_port", p.GuestPort, "old_host_port", p.HostPort, "host_port", hp)
			return hp, true
		}
	}
	if err != nil {
		e.log.Warn("published port not bound again after the resume", "workspace_id", rec.ID, "service", service, "guest_port", p.GuestPort, "err", err)
		return 0, false
	}
	return hostPortOf(rep, p.GuestPort), true
}

// hostPortOf is the host port rep shows for a guest port.
func hostPortOf(rep *supervisor.NetReply, guest int) int {
	for _, p := range rep.Ports {
		if int(p.GuestPort) == guest {
			return int(p.HostPort)
		}
	}
	return 0
}

// runningServices names the services of rec's guest that run (starting
// or ready).
func (e *Engine) runningServices(ctx context.Context, rec *vmRecord) (map[string]bool, error) {
	out := map[string]bool{}
	err := e.serviceCall(ctx, rec, func(c *agentproto.Client) error {
		l, err := c.ServiceList(ctx)
		if err != nil {
			return err
		}
		for _, s := range l.Services {
			out[s.Name] = s.State == agentproto.ServiceStarting || s.State == agentproto.ServiceReady
		}
		return nil
	})
	return out, err
}
