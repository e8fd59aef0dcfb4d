package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/redact"
)

// Services: named long-running processes, each in its own process group,
// with a readiness probe, an optional restart on failure, and a bounded
// log (stdout and stderr together, through the secrets' redactor) that
// outlives the process.
const (
	serviceLogBytes  = 1 << 20
	maxServices      = 32
	defaultStopGrace = 5 * time.Second
	firstBackoff     = time.Second
	maxBackoff       = 30 * time.Second
	// stableAfter is how long a restarted service must run before its
	// backoff starts again from firstBackoff.
	stableAfter  = 30 * time.Second
	logTailLines = 20
)

type service struct {
	spec agentproto.ServiceStartRequest
	cwd  string // as the guest sees it
	dir  string // where it is under FSRoot
	log  *outBuf
	red  *redact.Stream

	stopReq  chan struct{} // closed by stop
	stopOnce sync.Once
	settled  chan struct{} // closed at the first outcome: ready, failed or ended
	settle   sync.Once
	finished chan struct{} // closed when the service will not run again

	mu       sync.Mutex
	state    string
	pid      int
	started  *time.Time
	readyAt  *time.Time
	ended    *time.Time
	exitCode *int
	restarts int
	message  string
	// stopGrace is how long a stop waits between TERM and KILL.
	stopGrace time.Duration
}

func (sv *service) info() *agentproto.ServiceInfo {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return &agentproto.ServiceInfo{Name: sv.spec.Name, State: sv.state, Argv: sv.spec.Argv, Cwd: sv.cwd, Readiness: sv.spec.Readiness,
		Restart: sv.spec.Restart, Pid: sv.pid, StartedAt: sv.started, ReadyAt: sv.readyAt, EndedAt: sv.ended, ExitCode: sv.exitCode,
		Restarts: sv.restarts, Message: sv.message}
}

func (sv *service) running() bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.state == agentproto.ServiceStarting || sv.state == agentproto.ServiceReady
}

func (sv *service) set(f func()) {
	sv.mu.Lock()
	f()
	sv.mu.Unlock()
}

func (sv *service) note(format string, a ...any) {
	sv.red.Flush()
	fmt.Fprintf(sv.log, "[pyro] "+format+"\n", a...)
}

func (h *Handler) serviceStart(ctx context.Context, req agentproto.ServiceStartRequest) (*agentproto.ServiceInfo, error) {
	if err := agentproto.CheckServiceName(req.Name); err != nil {
		return nil, err
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give the service's command", "empty command")
	}
	if err := agentproto.CheckReadiness(req.Readiness); err != nil {
		return nil, err
	}
	var err error
	if req.Restart, err = agentproto.CheckRestart(req.Restart); err != nil {
		return nil, err
	}
	if req.ReadyTimeoutMs <= 0 {
		req.ReadyTimeoutMs = 30_000
	}
	if req.ReadyIntervalMs <= 0 {
		req.ReadyIntervalMs = 500
	}
	cwd, dir, err := h.workDir(req.Cwd)
	if err != nil {
		return nil, err
	}
	log := newOutBuf(serviceLogBytes)
	sv := &service{spec: req, cwd: cwd, dir: dir, log: log, red: redact.NewStream(h.live.redactor(), log),
		stopReq: make(chan struct{}), settled: make(chan struct{}), finished: make(chan struct{}), state: agentproto.ServiceStarting}
	h.live.mu.Lock()
	if old, ok := h.live.services[req.Name]; ok && old.running() {
		h.live.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrAlreadyExists, "stop it first, or pick another name", "service %q is already %s", req.Name, old.info().State)
	}
	if _, ok := h.live.services[req.Name]; !ok && len(h.live.services) >= maxServices {
		h.live.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "this workspace already has %d services", maxServices)
	}
	h.live.services[req.Name] = sv
	h.live.mu.Unlock()
	go h.runService(sv)
	select {
	case <-sv.settled:
	case <-ctx.Done():
		// The caller went away; the service carries on.
	}
	info := sv.info()
	if info.State != agentproto.ServiceReady {
		tail, _ := sv.log.tail(logTailLines)
		info.LogTail = string(tail)
	}
	return info, nil
}

// launch starts one run of the service's process, its output piped into
// the log; pumped is closed when the pipe is drained.
func (h *Handler) launch(sv *service) (int, <-chan syscall.WaitStatus, <-chan struct{}, error) {
	env := mergeEnv(h.cfg.BaseEnv, sv.spec.Env)
	prog, ok := lookPath(sv.spec.Argv[0], envGet(env, "PATH"))
	if !ok {
		return 0, nil, nil, fmt.Errorf("command not found: %s", sv.spec.Argv[0])
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, nil, nil, err
	}
	devnull, _ := os.Open(os.DevNull)
	cmd := &exec.Cmd{Path: prog, Args: sv.spec.Argv, Env: env, Dir: sv.dir, Stdin: devnull, Stdout: w, Stderr: w,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}} // its own group: a stop reaches all of it
	pid, exited, err := h.startCmd(cmd)
	w.Close()
	if devnull != nil {
		devnull.Close()
	}
	if err != nil {
		r.Close()
		return 0, nil, nil, err
	}
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				sv.red.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		<-pumped
		r.Close()
	}()
	return pid, exited, pumped, nil
}

// runService runs the service until it is stopped, fails its readiness,
// or ends without a restart.
func (h *Handler) runService(sv *service) {
	defer close(sv.finished)
	defer sv.settle.Do(func() { close(sv.settled) })
	timeout := time.Duration(sv.spec.ReadyTimeoutMs) * time.Millisecond
	deadline := time.Now().Add(timeout)
	backoff := firstBackoff
	for {
		now := time.Now().UTC()
		pid, exited, pumped, err := h.launch(sv)
		if err != nil {
			sv.note("cannot start: %v", err)
			sv.set(func() {
				sv.state, sv.ended, sv.message = agentproto.ServiceFailed, &now, "cannot start: "+err.Error()
			})
			return
		}
		sv.set(func() {
			sv.state, sv.pid, sv.started, sv.ended, sv.exitCode = agentproto.ServiceStarting, pid, &now, nil, nil
		})
		probeCtx, stopProbe := context.WithCancel(context.Background())
		ready := make(chan bool, 1)
		go func() { ready <- h.waitReady(probeCtx, sv, deadline) }()
		var ws syscall.WaitStatus
		var outcome string // "" (exited on its own), failed or stopped
	wait:
		for {
			select {
			case ok := <-ready:
				ready = nil
				if ok {
					t := time.Now().UTC()
					sv.set(func() { sv.state, sv.readyAt, sv.message = agentproto.ServiceReady, &t, "" })
					sv.settle.Do(func() { close(sv.settled) })
					continue
				}
				outcome = agentproto.ServiceFailed
				sv.note("not ready after %s; stopping it", timeout)
				ws = terminate(pid, exited, defaultStopGrace)
				break wait
			case ws = <-exited:
				break wait
			case <-sv.stopReq:
				outcome = agentproto.ServiceStopped
				ws = terminate(pid, exited, sv.grace())
				break wait
			}
		}
		stopProbe()
		select {
		case <-pumped:
		case <-time.After(exitDrain):
		}
		sv.red.Flush()
		code := exitStatus(ws)
		end := time.Now().UTC()
		var wasReady bool
		sv.set(func() {
			wasReady = sv.state == agentproto.ServiceReady
			sv.pid, sv.ended, sv.exitCode = 0, &end, &code
			switch outcome {
			case agentproto.ServiceFailed:
				sv.state, sv.message = agentproto.ServiceFailed, fmt.Sprintf("not ready within %s", timeout)
			case agentproto.ServiceStopped:
				sv.state, sv.message = agentproto.ServiceStopped, ""
			default:
				sv.state, sv.message = agentproto.ServiceExited, exitMessage(ws, wasReady)
			}
		})
		if outcome != "" || code == 0 || sv.spec.Restart != agentproto.RestartOnFailure {
			return
		}
		// on-failure: again after a backoff, with a fresh readiness window
		// if it had been ready; a crash loop that never gets ready still
		// fails when the first window closes.
		if end.Sub(now) > stableAfter {
			backoff = firstBackoff
		}
		if wasReady {
			deadline = time.Now().Add(backoff + timeout)
		} else if time.Now().Add(backoff).After(deadline) {
			sv.set(func() {
				sv.state, sv.message = agentproto.ServiceFailed, fmt.Sprintf("not ready within %s (it kept exiting)", timeout)
			})
			return
		}
		sv.set(func() { sv.restarts++; sv.state = agentproto.ServiceStarting })
		sv.note("exited with code %d; restarting in %s", code, backoff)
		select {
		case <-time.After(backoff):
		case <-sv.stopReq:
			sv.set(func() { sv.state = agentproto.ServiceStopped })
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func exitMessage(ws syscall.WaitStatus, wasReady bool) string {
	var m string
	if ws.Signaled() {
		m = "killed by signal " + ws.Signal().String()
	} else {
		m = fmt.Sprintf("exited with code %d", ws.ExitStatus())
	}
	if !wasReady {
		m += " before it was ready"
	}
	return m
}

// terminate sends TERM to the process group, KILL after grace, and
// returns the exit status.
func terminate(pid int, exited <-chan syscall.WaitStatus, grace time.Duration) syscall.WaitStatus {
	if pid > 1 {
		syscall.Kill(-pid, syscall.SIGTERM)
		syscall.Kill(-pid, syscall.SIGCONT)
	}
	select {
	case ws := <-exited:
		killGroup(pid) // what it left behind
		return ws
	case <-time.After(grace):
	}
	killGroup(pid)
	return <-exited
}

// grace is what stop set before it closed stopReq.
func (sv *service) grace() time.Duration {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.stopGrace
}

// stop stops the service (if it runs) and returns its final state.
func (sv *service) stop(grace time.Duration) *agentproto.ServiceInfo {
	sv.set(func() { sv.stopGrace = grace })
	sv.stopOnce.Do(func() { close(sv.stopReq) })
	select {
	case <-sv.finished:
	case <-time.After(grace + 10*time.Second):
	}
	return sv.info()
}

func (h *Handler) lookupService(name string) (*service, error) {
	h.live.mu.Lock()
	defer h.live.mu.Unlock()
	sv, ok := h.live.services[name]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "list the services with `service_list`", "no service %q in this workspace", name)
	}
	return sv, nil
}

func (h *Handler) servicesSnapshot() []*service {
	h.live.mu.Lock()
	defer h.live.mu.Unlock()
	out := make([]*service, 0, len(h.live.services))
	for _, sv := range h.live.services {
		out = append(out, sv)
	}
	return out
}

func (h *Handler) serviceList() *agentproto.ServiceList {
	l := &agentproto.ServiceList{Services: []agentproto.ServiceInfo{}}
	for _, sv := range h.servicesSnapshot() {
		l.Services = append(l.Services, *sv.info())
	}
	sort.Slice(l.Services, func(i, j int) bool { return l.Services[i].Name < l.Services[j].Name })
	return l
}

func (h *Handler) serviceStatus(name string) (*agentproto.ServiceInfo, error) {
	sv, err := h.lookupService(name)
	if err != nil {
		return nil, err
	}
	return sv.info(), nil
}

func (h *Handler) serviceLogs(s *agentproto.Stream, req agentproto.ServiceLogsRequest) (*agentproto.ServiceLogsResult, error) {
	sv, err := h.lookupService(req.Name)
	if err != nil {
		return nil, err
	}
	lines := req.TailLines
	if req.All {
		lines = 0
	} else if lines <= 0 {
		lines = 200
	}
	data, truncated := sv.log.tail(lines)
	if _, err := s.Stdout().Write(data); err != nil {
		return nil, err
	}
	return &agentproto.ServiceLogsResult{Truncated: truncated, Service: *sv.info()}, nil
}

func (h *Handler) serviceStop(req agentproto.ServiceStopRequest) (*agentproto.ServiceInfo, error) {
	sv, err := h.lookupService(req.Name)
	if err != nil {
		return nil, err
	}
	grace := time.Duration(req.GraceMs) * time.Millisecond
	if grace <= 0 {
		grace = defaultStopGrace
	}
	return sv.stop(grace), nil
}
