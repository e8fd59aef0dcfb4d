package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// pipeBackend starts machines whose guest is h, served in-process over a pipe.
type pipeBackend struct{ h agentproto.Handler }

func (b pipeBackend) Capabilities() vmm.Capabilities { return vmm.Capabilities{Kind: "fake"} }

func (b pipeBackend) Start(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	host, guest := net.Pipe()
	m := &pipeMachine{host: host, done: make(chan struct{})}
	h := agentproto.HandlerFunc(func(ctx context.Context, s *agentproto.Stream) (any, error) {
		if s.Method == agentproto.MethodShutdown {
			s.AfterResponse(func() { m.Kill() })
			return struct{}{}, nil
		}
		return b.h.Handle(ctx, s)
	})
	go agentproto.Serve(context.Background(), guest, h)
	return m, nil
}

type pipeMachine struct {
	host net.Conn
	done chan struct{}
	once sync.Once
}

func (m *pipeMachine) Pid() int { return 0 }
func (m *pipeMachine) AgentConn(context.Context) (io.ReadWriteCloser, error) {
	return m.host, nil
}
func (m *pipeMachine) Wait() error { <-m.done; return nil }
func (m *pipeMachine) Kill() error { m.once.Do(func() { close(m.done); m.host.Close() }); return nil }

// runFake runs a supervisor for spec over h and returns its report.
func runFake(t *testing.T, h agentproto.Handler, spec vmm.MachineSpec, id *agentproto.IdentityRequest) (supervisor.Ready, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "svid-")
	if err != nil {
		t.Fatal(err)
	}
	spec.Dir = dir
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- supervisor.Run(ctx, pipeBackend{h}, supervisor.Config{Spec: spec, ControlSock: filepath.Join(dir, "ctl.sock"),
			BootTimeout: 10 * time.Second, Software: "test", Identity: id}, pw)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
		os.RemoveAll(dir)
	})
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var r supervisor.Ready
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r, filepath.Join(dir, "ctl.sock")
}

// A restored guest is given its identity before the supervisor says it is
// ready: fresh entropy, the host's clock and what the engine asked for.
func TestRestoreGivesIdentity(t *testing.T) {
	var got agentproto.IdentityRequest
	var calls int
	h := agentproto.HandlerFunc(func(ctx context.Context, s *agentproto.Stream) (any, error) {
		switch s.Method {
		case agentproto.MethodIdentity:
			calls++
			json.Unmarshal(s.Params, &got)
			return agentproto.IdentityResult{ClockStepMs: 5000}, nil
		case agentproto.MethodPing:
			return agentproto.PingResult{Hostname: "x"}, nil
		}
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "unexpected %s", s.Method)
	})
	before := time.Now()
	spec := vmm.MachineSpec{ID: "w", Restore: &vmm.Restore{State: "state", IgnoreShared: true}}
	r, sock := runFake(t, h, spec, &agentproto.IdentityRequest{Hostname: "pyro-1234", MachineID: "ab"})
	if !r.OK || r.Start != "warm" || r.Identity == nil || r.Identity.ClockStepMs != 5000 {
		t.Fatalf("ready = %+v", r)
	}
	if calls != 1 || len(got.Entropy) != supervisor.EntropyBytes || got.Hostname != "pyro-1234" || got.MachineID != "ab" {
		t.Fatalf("identity = %+v (%d calls)", got, calls)
	}
	if at := time.Unix(0, got.UnixNano); at.Before(before) || at.After(time.Now()) {
		t.Errorf("identity's clock %v is not the host's", at)
	}
	// The ready report says how long each step of the start took.
	var steps []string
	for _, s := range r.Timings {
		steps = append(steps, s.Step)
	}
	if strings.Join(steps, ",") != "vmm,handshake,identity,listen" {
		t.Errorf("timed steps %v", steps)
	}
	// Clients are served after it, on fresh stream ids.
	c := dial(t, sock)
	defer c.Close()
	if _, err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Two restores never get the same entropy.
	first := got.Entropy
	runFake(t, h, spec, nil)
	if string(first) == string(got.Entropy) {
		t.Error("two restores got the same entropy")
	}
}

// A guest that refuses its identity fails the boot as a restore failure
// (the engine then boots cold); a cold boot never sends one.
func TestRestoreFailureAndCold(t *testing.T) {
	var calls int
	h := agentproto.HandlerFunc(func(ctx context.Context, s *agentproto.Stream) (any, error) {
		if s.Method == agentproto.MethodIdentity {
			calls++
			return nil, errdefs.New(errdefs.ErrInternal, "", "no")
		}
		return agentproto.PingResult{}, nil
	})
	r, _ := runFake(t, h, vmm.MachineSpec{ID: "f", Restore: &vmm.Restore{State: "s"}}, nil)
	if r.OK || !r.Restored || r.Start != "resume" {
		t.Fatalf("failed restore: %+v", r)
	}
	calls = 0
	r, _ = runFake(t, h, vmm.MachineSpec{ID: "c"}, nil)
	if !r.OK || r.Start != "cold" || calls != 0 {
		t.Fatalf("cold boot: %+v, %d identity calls", r, calls)
	}
}
