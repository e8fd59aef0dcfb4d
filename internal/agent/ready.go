package agent

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"strconv"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// probeTimeout bounds one readiness probe.
const probeTimeout = 5 * time.Second

// waitReady probes sv every interval until it is ready (true), deadline
// passes (false) or ctx ends (false). Without a probe it is ready at once.
func (h *Handler) waitReady(ctx context.Context, sv *service, deadline time.Time) bool {
	r := sv.spec.Readiness
	if r == nil {
		return true
	}
	interval := time.Duration(sv.spec.ReadyIntervalMs) * time.Millisecond
	for {
		pctx, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(probeTimeout)))
		ok := h.probe(pctx, sv, r)
		cancel()
		if ok {
			return true
		}
		if ctx.Err() != nil || !time.Now().Add(interval).Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (h *Handler) probe(ctx context.Context, sv *service, r *agentproto.Readiness) bool {
	switch r.Type {
	case agentproto.ReadyFile:
		p := r.Path
		if !path.IsAbs(p) {
			p = path.Join(sv.cwd, p)
		}
		_, err := os.Stat(h.hostPath(p))
		return err == nil
	case agentproto.ReadyTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)))
		if err != nil {
			return false
		}
		c.Close()
		return true
	case agentproto.ReadyHTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
		if err != nil {
			return false
		}
		// No proxy: the probe is about this machine's own service.
		client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 400
	case agentproto.ReadyCommand:
		return h.probeCommand(ctx, sv, r.Command)
	}
	return false
}

// probeCommand runs a readiness command in its own group, killed when ctx
// ends; output is discarded.
func (h *Handler) probeCommand(ctx context.Context, sv *service, command string) bool {
	argv := []string{"/bin/sh", "-c", command}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer devnull.Close()
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Env: mergeEnv(h.cfg.BaseEnv, sv.spec.Env), Dir: sv.dir,
		Stdin: devnull, Stdout: devnull, Stderr: devnull, SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	pid, exited, err := h.startCmd(cmd)
	if err != nil {
		return false
	}
	select {
	case ws := <-exited:
		return ws.Exited() && ws.ExitStatus() == 0
	case <-ctx.Done():
		killGroup(pid)
		<-exited
		return false
	}
}
