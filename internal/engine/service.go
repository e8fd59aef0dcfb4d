package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Services live in the guest agent (internal/agent/service.go): the engine
// checks requests, boots the workspace to start one, and logs starts and
// stops. After a cold stop their last states and log tails are read from
// servicesFile.

const (
	maxReadyTimeoutSeconds = 3600
	minReadyIntervalMs     = 50
	maxReadyIntervalMs     = 60_000
)

func serviceView(id string, s *agentproto.ServiceInfo) api.Service {
	v := api.Service{WorkspaceID: id, Name: s.Name, State: s.State, Command: s.Argv, Cwd: s.Cwd, Restart: s.Restart, Pid: s.Pid,
		StartedAt: s.StartedAt, ReadyAt: s.ReadyAt, EndedAt: s.EndedAt, ExitCode: s.ExitCode, RestartCount: s.Restarts,
		Message: s.Message, PublishedPorts: []api.PublishedPort{}}
	if r := s.Readiness; r != nil {
		v.Readiness = &api.Readiness{Type: r.Type, Path: r.Path, Port: r.Port, URL: r.URL, Command: r.Command}
	}
	return v
}

// serviceRequest checks a start's options and builds its request.
func serviceRequest(name string, o api.ServiceStartOptions) (agentproto.ServiceStartRequest, error) {
	var req agentproto.ServiceStartRequest
	if err := agentproto.CheckServiceName(name); err != nil {
		return req, err
	}
	switch {
	case o.Command != "" && len(o.Argv) > 0:
		return req, errdefs.New(errdefs.ErrInvalidArgument, "set `command` (a shell string) or `argv`, not both", "both a shell command and an argv are set")
	case o.Command == "" && len(o.Argv) == 0:
		return req, errdefs.New(errdefs.ErrInvalidArgument, "give the service's `command`, e.g. \"python3 -m http.server 8000\"", "empty command")
	case len(o.Argv) > 0 && o.Argv[0] == "":
		return req, errdefs.New(errdefs.ErrInvalidArgument, "", "empty command name")
	}
	argv := o.Argv
	if o.Command != "" {
		argv = []string{"/bin/sh", "-c", o.Command}
	}
	if o.ReadyTimeoutSeconds == 0 {
		o.ReadyTimeoutSeconds = api.DefaultReadyTimeoutSeconds
	}
	if o.ReadyIntervalMs == 0 {
		o.ReadyIntervalMs = api.DefaultReadyIntervalMs
	}
	if o.ReadyTimeoutSeconds < 1 || o.ReadyTimeoutSeconds > maxReadyTimeoutSeconds {
		return req, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `ready_timeout_seconds` from 1 to %d", maxReadyTimeoutSeconds),
			"ready_timeout_seconds %d is out of range", o.ReadyTimeoutSeconds)
	}
	if o.ReadyIntervalMs < minReadyIntervalMs || o.ReadyIntervalMs > maxReadyIntervalMs {
		return req, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `ready_interval_ms` from %d to %d", minReadyIntervalMs, maxReadyIntervalMs),
			"ready_interval_ms %d is out of range", o.ReadyIntervalMs)
	}
	var ready *agentproto.Readiness
	if r := o.Readiness; r != nil {
		ready = &agentproto.Readiness{Type: r.Type, Path: r.Path, Port: r.Port, URL: r.URL, Command: r.Command}
	}
	if err := agentproto.CheckReadiness(ready); err != nil {
		return req, err
	}
	restart, err := agentproto.CheckRestart(o.Restart)
	if err != nil {
		return req, err
	}
	return agentproto.ServiceStartRequest{Name: name, Argv: argv, Cwd: o.Cwd, Readiness: ready,
		ReadyTimeoutMs: int64(o.ReadyTimeoutSeconds) * 1000, ReadyIntervalMs: int64(o.ReadyIntervalMs), Restart: restart}, nil
}

// StartService starts a named service in the workspace (booting it if
// needed) and returns once it is ready. A service that is not ready
// within its timeout is stopped and reported as an error carrying the end
// of its log; one that exits first, likewise, with its exit code.
func (e *Engine) StartService(ctx context.Context, ref, name string, o api.ServiceStartOptions) (*api.Service, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "service start", phaseBoot, "ready")
	req, err := serviceRequest(name, o)
	if err != nil {
		return nil, err
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if req.Env, err = e.secretEnv(rec, o.SecretEnv); err != nil {
		return nil, err
	}
	rec, _, err = e.ensureRunning(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	op.Phase("ready")
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	started := time.Now().UTC().Truncate(time.Millisecond)
	// The guest bounds the wait by the readiness timeout; the host's
	// deadline only catches a guest that stopped answering.
	sctx, cancel := context.WithTimeout(ctx, time.Duration(req.ReadyTimeoutMs)*time.Millisecond+2*stopGrace+30*time.Second)
	defer cancel()
	info, err := c.ServiceStart(sctx, req)
	if err != nil {
		return nil, e.scrub(rec.ID, err)
	}
	red := e.redactor(rec.ID)
	entry := api.LogEntry{Kind: api.LogServiceStart, Service: name, Command: red.Strings(append([]string(nil), req.Argv...)), Cwd: info.Cwd,
		StartedAt: started, DurationMs: time.Since(started).Milliseconds()}
	if info.ExitCode != nil {
		entry.ExitCode = *info.ExitCode
	}
	if info.State != agentproto.ServiceReady {
		entry.Error = red.String(info.Message)
	}
	e.appendEvent(rec.ID, entry)
	if info.State != agentproto.ServiceReady {
		return nil, e.scrub(rec.ID, notReady(rec.ID, info))
	}
	op.Done()
	v := serviceView(rec.ID, info)
	return &v, nil
}

// notReady is the error of a start that did not end ready.
func notReady(id string, info *agentproto.ServiceInfo) error {
	class, hint := errdefs.ErrFailedPrecondition, "read its log with `service_logs`, fix the command and start it again"
	if info.State == agentproto.ServiceFailed && info.ExitCode != nil && strings.HasPrefix(info.Message, "not ready") {
		class, hint = errdefs.ErrTimeout, "check the readiness probe, or give it longer with `ready_timeout_seconds`"
	}
	msg := fmt.Sprintf("service %s in workspace %s: %s", info.Name, id, info.Message)
	if t := strings.TrimRight(info.LogTail, "\n"); t != "" {
		msg += "\n--- last lines of its log ---\n" + t
	}
	return errdefs.New(class, hint, "%s", msg)
}

// serviceCall dials a running workspace for one call on its services.
func (e *Engine) serviceCall(ctx context.Context, rec *vmRecord, f func(*agentproto.Client) error) error {
	c, err := e.dial(ctx, rec)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := f(c); err != nil {
		return e.scrub(rec.ID, err)
	}
	return nil
}

// stoppedNote explains where a stopped workspace's service states come from.
func stoppedNote(s *savedServices) string {
	return fmt.Sprintf("the workspace is not running: its services were stopped with it at %s; this is their last state", s.SavedAt.Format(time.RFC3339))
}

// ListServices lists a workspace's services; for a stopped workspace, as
// they were when it stopped.
func (e *Engine) ListServices(ctx context.Context, ref string) (*api.ServiceList, error) {
	defer e.enter()()
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	out := &api.ServiceList{WorkspaceID: rec.ID, Services: []api.Service{}}
	if !e.alive(rec) {
		if s := e.savedServicesOf(rec.ID); s != nil {
			out.Note = stoppedNote(s)
			for i := range s.Services {
				out.Services = append(out.Services, serviceView(rec.ID, &s.Services[i]))
			}
		}
		out.Count = len(out.Services)
		return out, nil
	}
	err = e.serviceCall(ctx, rec, func(c *agentproto.Client) error {
		l, err := c.ServiceList(ctx)
		if err != nil {
			return err
		}
		for i := range l.Services {
			out.Services = append(out.Services, serviceView(rec.ID, &l.Services[i]))
		}
		return nil
	})
	out.Count = len(out.Services)
	return out, err
}

// saved finds a service in what the last cold stop kept.
func (e *Engine) saved(rec *vmRecord, name string) (*agentproto.ServiceInfo, *savedServices, error) {
	if s := e.savedServicesOf(rec.ID); s != nil {
		for i := range s.Services {
			if s.Services[i].Name == name {
				return &s.Services[i], s, nil
			}
		}
	}
	return nil, nil, errdefs.New(errdefs.ErrFailedPrecondition, "start the service again: that boots the workspace",
		"workspace %s is not running and had no service %q when it stopped", rec.ID, name)
}

// StatusService reports one service.
func (e *Engine) StatusService(ctx context.Context, ref, name string) (*api.Service, error) {
	defer e.enter()()
	if err := agentproto.CheckServiceName(name); err != nil {
		return nil, err
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if !e.alive(rec) {
		info, _, err := e.saved(rec, name)
		if err != nil {
			return nil, err
		}
		v := serviceView(rec.ID, info)
		return &v, nil
	}
	var v api.Service
	err = e.serviceCall(ctx, rec, func(c *agentproto.Client) error {
		info, err := c.ServiceStatus(ctx, name)
		if err == nil {
			v = serviceView(rec.ID, info)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// LogsService returns the end of a service's log (stdout and stderr
// together), or all of it that is kept.
func (e *Engine) LogsService(ctx context.Context, ref, name string, o api.ServiceLogsOptions) (*api.ServiceLogs, error) {
	defer e.enter()()
	if err := agentproto.CheckServiceName(name); err != nil {
		return nil, err
	}
	if o.TailLines < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "use a positive `tail_lines`", "tail_lines %d is negative", o.TailLines)
	}
	if o.TailLines > 0 && o.All {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give `tail_lines` or `all`, not both", "both tail_lines and all")
	}
	if o.TailLines == 0 {
		o.TailLines = api.DefaultServiceTailLines
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	red := e.redactor(rec.ID)
	if !e.alive(rec) {
		info, s, err := e.saved(rec, name)
		if err != nil {
			return nil, err
		}
		out, cut := lastLines(info.LogTail, o)
		return &api.ServiceLogs{WorkspaceID: rec.ID, Name: name, State: info.State, Output: red.String(out), Truncated: cut,
			Note: stoppedNote(s) + " (the end of its log)"}, nil
	}
	var out *api.ServiceLogs
	err = e.serviceCall(ctx, rec, func(c *agentproto.Client) error {
		r, data, err := c.ServiceLogs(ctx, agentproto.ServiceLogsRequest{Name: name, TailLines: o.TailLines, All: o.All})
		if err != nil {
			return err
		}
		out = &api.ServiceLogs{WorkspaceID: rec.ID, Name: name, State: r.Service.State, Output: red.String(string(data)), Truncated: r.Truncated}
		return nil
	})
	return out, err
}

// lastLines cuts a saved log tail as o asks.
func lastLines(s string, o api.ServiceLogsOptions) (string, bool) {
	if o.All {
		return s, false
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) <= o.TailLines {
		return s, false
	}
	return strings.Join(lines[len(lines)-o.TailLines:], ""), true
}

// StopService stops a service: TERM to its process group, KILL after a
// grace period. Stopping a service that no longer runs changes nothing.
func (e *Engine) StopService(ctx context.Context, ref, name string) (*api.Service, error) {
	defer e.enter()()
	if err := agentproto.CheckServiceName(name); err != nil {
		return nil, err
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if !e.alive(rec) {
		info, _, err := e.saved(rec, name)
		if err != nil {
			return nil, err
		}
		v := serviceView(rec.ID, info)
		return &v, nil
	}
	var v api.Service
	err = e.serviceCall(ctx, rec, func(c *agentproto.Client) error {
		before, err := c.ServiceStatus(ctx, name)
		if err != nil {
			return err
		}
		info, err := c.ServiceStop(ctx, agentproto.ServiceStopRequest{Name: name, GraceMs: stopGrace.Milliseconds()})
		if err != nil {
			return err
		}
		v = serviceView(rec.ID, info)
		if before.State == agentproto.ServiceStarting || before.State == agentproto.ServiceReady {
			entry := api.LogEntry{Kind: api.LogServiceStop, Service: name, StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
			if info.ExitCode != nil {
				entry.ExitCode = *info.ExitCode
			}
			e.appendEvent(rec.ID, entry)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}
