package agent

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/redact"
)

// GuestSecretsDir is where a guest's secrets are: a tmpfs (the guest's
// /run), never the workspace's disk.
const GuestSecretsDir = "/run/pyro-secrets"

// living is what the agent keeps between requests: the secrets, the open
// shells and the services. It lives as long as the agent, whatever host
// connections come and go.
type living struct {
	execs atomic.Int64 // exec requests running
	red   atomic.Pointer[redact.Redactor]

	mu       sync.Mutex
	shells   map[string]*shell
	services map[string]*service
}

func newLiving() *living {
	return &living{shells: map[string]*shell{}, services: map[string]*service{}}
}

// redactor is the current secrets' redactor (nil: none).
func (l *living) redactor() *redact.Redactor { return l.red.Load() }

// handleLiving serves the requests of living.go's family; ok is false for
// a method it does not know.
func (h *Handler) handleLiving(ctx context.Context, s *agentproto.Stream) (res any, ok bool, err error) {
	var params any
	var run func() (any, error)
	switch s.Method {
	case agentproto.MethodSecretsSet:
		var req agentproto.SecretsSetRequest
		params, run = &req, func() (any, error) { return struct{}{}, h.setSecrets(req) }
	case agentproto.MethodActivity:
		run = func() (any, error) { return h.activity(), nil }
	case agentproto.MethodStopAll:
		var req agentproto.StopAllRequest
		params, run = &req, func() (any, error) { return h.stopAll(req), nil }
	case agentproto.MethodShellOpen:
		var req agentproto.ShellOpenRequest
		params, run = &req, func() (any, error) { return h.shellOpen(req) }
	case agentproto.MethodShellRead:
		var req agentproto.ShellReadRequest
		params, run = &req, func() (any, error) { return h.shellRead(ctx, s, req) }
	case agentproto.MethodShellWrite:
		var req agentproto.ShellWriteRequest
		params, run = &req, func() (any, error) { return h.shellWrite(ctx, req) }
	case agentproto.MethodShellSignal:
		var req agentproto.ShellSignalRequest
		params, run = &req, func() (any, error) { return h.shellSignal(req) }
	case agentproto.MethodShellResize:
		var req agentproto.ShellResizeRequest
		params, run = &req, func() (any, error) { return h.shellResize(req) }
	case agentproto.MethodShellClose:
		var req agentproto.ShellRef
		params, run = &req, func() (any, error) { return h.shellClose(req.ID) }
	case agentproto.MethodShellList:
		run = func() (any, error) { return h.shellList(), nil }
	case agentproto.MethodShellAttach:
		var req agentproto.ShellAttachRequest
		params, run = &req, func() (any, error) { return h.shellAttach(ctx, s, req) }
	case agentproto.MethodServiceStart:
		var req agentproto.ServiceStartRequest
		params, run = &req, func() (any, error) { return h.serviceStart(ctx, req) }
	case agentproto.MethodServiceList:
		run = func() (any, error) { return h.serviceList(), nil }
	case agentproto.MethodServiceStatus:
		var req agentproto.ServiceRef
		params, run = &req, func() (any, error) { return h.serviceStatus(req.Name) }
	case agentproto.MethodServiceLogs:
		var req agentproto.ServiceLogsRequest
		params, run = &req, func() (any, error) { return h.serviceLogs(s, req) }
	case agentproto.MethodServiceStop:
		var req agentproto.ServiceStopRequest
		params, run = &req, func() (any, error) { return h.serviceStop(req) }
	default:
		return nil, false, nil
	}
	if params != nil {
		if err := decode(s.Params, params); err != nil {
			return nil, true, err
		}
	}
	res, err = run()
	return res, true, err
}

// setSecrets replaces the secrets: their files (0400, in a 0700
// directory) when the agent has a secrets directory, and the redactor.
func (h *Handler) setSecrets(req agentproto.SecretsSetRequest) error {
	values := make([]string, 0, len(req.Secrets))
	keep := map[string]bool{}
	for _, s := range req.Secrets {
		if err := agentproto.CheckSecretName(s.Name); err != nil {
			return err
		}
		if s.Value == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "", "secret %s is empty", s.Name)
		}
		values = append(values, s.Value)
		keep[s.Name] = true
	}
	if dir := h.cfg.SecretsDir; dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "", "creating %s", dir)
		}
		os.Chmod(dir, 0o700)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !keep[e.Name()] {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		for _, s := range req.Secrets {
			p := filepath.Join(dir, s.Name)
			os.Remove(p) // a 0400 file is not rewritten in place
			if err := os.WriteFile(p, []byte(s.Value), 0o400); err != nil {
				return errdefs.Wrap(errdefs.ErrInternal, err, "", "writing secret %s", s.Name)
			}
		}
	}
	h.live.red.Store(redact.New(values...))
	return nil
}

func (h *Handler) activity() *agentproto.Activity {
	a := &agentproto.Activity{Execs: int(h.live.execs.Load())}
	for _, sh := range h.shellsSnapshot() {
		if sh.info().State == agentproto.ShellRunning {
			a.Shells++
		}
	}
	for _, sv := range h.servicesSnapshot() {
		if sv.running() {
			a.Services++
		}
	}
	return a
}

// stopAll closes every shell and stops every service, in parallel.
func (h *Handler) stopAll(req agentproto.StopAllRequest) *agentproto.StopAllResult {
	grace := time.Duration(req.GraceMs) * time.Millisecond
	if grace <= 0 {
		grace = defaultStopGrace
	}
	res := &agentproto.StopAllResult{Shells: []agentproto.ShellInfo{}, Services: []agentproto.ServiceInfo{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sh := range h.shellsSnapshot() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if info, err := h.shellClose(sh.id); err == nil {
				mu.Lock()
				res.Shells = append(res.Shells, *info)
				mu.Unlock()
			}
		}()
	}
	for _, sv := range h.servicesSnapshot() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info := sv.stop(grace)
			if req.LogTailBytes > 0 {
				data, _, _, _ := sv.log.read(max(0, sv.log.end()-int64(req.LogTailBytes)), req.LogTailBytes)
				info.LogTail = string(data)
			}
			mu.Lock()
			res.Services = append(res.Services, *info)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(res.Shells, func(i, j int) bool { return res.Shells[i].StartedAt.Before(res.Shells[j].StartedAt) })
	sort.Slice(res.Services, func(i, j int) bool { return res.Services[i].Name < res.Services[j].Name })
	return res
}
