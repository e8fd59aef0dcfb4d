package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/agentproto/fakeguest"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// hostileBackend boots "machines" whose agent is a fakeguest behaviour.
type hostileBackend struct {
	behave  fakeguest.Behavior
	guest   chan *fakeguest.Conn
	machine *hostileMachine
}

func (b *hostileBackend) Capabilities() vmm.Capabilities { return vmm.Capabilities{Kind: "hostile"} }

func (b *hostileBackend) Start(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	b.machine = &hostileMachine{b: b, exited: make(chan struct{})}
	return b.machine, nil
}

type hostileMachine struct {
	b      *hostileBackend
	exited chan struct{}
	once   sync.Once
	conn   net.Conn
}

func (m *hostileMachine) Pid() int { return 0 }

func (m *hostileMachine) AgentConn(ctx context.Context) (io.ReadWriteCloser, error) {
	host, guest := net.Pipe()
	m.conn = guest
	m.b.guest <- fakeguest.Serve(context.Background(), guest, m.b.behave)
	return host, nil
}

func (m *hostileMachine) Wait() error { <-m.exited; return nil }

func (m *hostileMachine) Kill() error {
	m.once.Do(func() {
		if m.conn != nil {
			m.conn.Close()
		}
		close(m.exited)
	})
	return nil
}

// The real supervisor and client against a guest that breaks the protocol
// on purpose: the host stays within its memory bound, each call returns an
// error (or its answer, for harmless garbage), and everything is cleaned up
// when the machine goes.
func TestHostileGuestThroughSupervisor(t *testing.T) {
	// The bound covers the test process: supervisor, client and the fake
	// guest together. Without the host-side caps a flood grows the client's
	// queue by the guest's whole output (gigabytes here).
	// heapBound is on the live heap (what is retained; garbage the
	// collector has not reached under load does not count): the client's
	// 16 MiB connection cap, the supervisor's one frame at a time, pipes.
	const heapBound, rssGrowthBound = 40 << 20, 96 << 20
	tests := []struct {
		name      string
		guest     fakeguest.Behavior
		slow      bool
		timeout   time.Duration
		wantClass error
		wantIn    string
		minSent   int64
	}{
		{"flood stdout", fakeguest.Flood(64<<10, agentproto.TypeStdout), false, 3 * time.Second, errdefs.ErrTimeout, "", 32 << 20},
		{"flood, slow client", fakeguest.Flood(64<<10, agentproto.TypeStdout), true, 3 * time.Second, errdefs.ErrTimeout, "", 1 << 20},
		{"one-byte frames", fakeguest.Tiny, false, 2 * time.Second, errdefs.ErrTimeout, "", 4 << 10},
		{"never answers", fakeguest.Silent, false, 500 * time.Millisecond, errdefs.ErrTimeout, "", 0},
		{"unknown types and stream ids", fakeguest.Garbage(agentproto.ExecResult{}), false, 10 * time.Second, nil, "ok\n", 0},
		{"host-only frame type is not relayed", fakeguest.HostOnly(agentproto.TypeRequest), false, 10 * time.Second, nil, "", 0},
		{"oversized length", fakeguest.Oversized(1 << 31), false, 10 * time.Second, errdefs.ErrUnavailable, "connection lost", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GC()
			goroutines := runtime.NumGoroutine()
			rss0 := fakeguest.RSS()
			stop := fakeguest.Peaks()
			dir, _ := os.MkdirTemp("", "svh-")
			defer os.RemoveAll(dir)
			b := &hostileBackend{behave: tt.guest, guest: make(chan *fakeguest.Conn, 1)}
			sock := filepath.Join(dir, "ctl.sock")
			pr, pw := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() {
				ran <- supervisor.Run(ctx, b, supervisor.Config{Spec: vmm.MachineSpec{ID: "h", Dir: dir}, ControlSock: sock,
					BootTimeout: 10 * time.Second, Software: "test"}, pw)
			}()
			line, _ := bufio.NewReader(pr).ReadBytes('\n')
			var ready supervisor.Ready
			if json.Unmarshal(line, &ready) != nil || !ready.OK {
				t.Fatalf("ready = %s", line)
			}
			g := <-b.guest
			c := dial(t, sock)
			var out syncBuffer
			var w io.Writer = &out
			if tt.slow {
				w = slowWriter{}
			}
			cctx, ccancel := context.WithTimeout(context.Background(), tt.timeout)
			_, err := c.Exec(cctx, agentproto.ExecRequest{Shell: "x"}, nil, w, w)
			ccancel()
			c.Close()
			heap, rss := stop()
			t.Logf("guest sent %d KiB; live heap peak %d MiB; RSS %d -> peak %d MiB", g.Sent()>>10, heap>>20, rss0>>20, rss>>20)
			if heap > heapBound || rss > rss0+rssGrowthBound {
				t.Errorf("over the bound: heap %d MiB (bound %d), RSS grew %d MiB (bound %d)", heap>>20, heapBound>>20, (rss-rss0)>>20, rssGrowthBound>>20)
			}
			if g.Sent() < tt.minSent {
				t.Errorf("guest sent only %d bytes: the flood did not happen", g.Sent())
			}
			switch {
			case tt.wantClass == nil && err != nil:
				t.Errorf("err = %v, want success", err)
			case tt.wantClass == nil && out.String() != tt.wantIn:
				t.Errorf("stdout %q, want %q", out.String(), tt.wantIn)
			case tt.wantClass != nil && (!errors.Is(err, tt.wantClass) || !strings.Contains(err.Error(), tt.wantIn)):
				t.Errorf("err = %v, want %v containing %q", err, tt.wantClass, tt.wantIn)
			}
			// The machine goes (killed, as a stuck guest is): the supervisor
			// returns, and nothing it or the client started is left running.
			b.machine.Kill()
			defer cancel()
			select {
			case <-ran:
			case <-time.After(20 * time.Second):
				t.Fatal("supervisor did not return")
			}
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > goroutines+2 {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines left, %d before:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) { time.Sleep(time.Millisecond); return len(p), nil }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
