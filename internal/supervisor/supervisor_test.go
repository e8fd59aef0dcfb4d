package supervisor_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/hostcompat"
)

// start runs a supervisor over the host-compat backend (the real agent
// handler, in-process) and returns its control socket once it is ready.
func start(t *testing.T) (sock string, stop func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sv-")
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "ctl.sock")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- supervisor.Run(ctx, hostcompat.New(), supervisor.Config{
			Spec:        vmm.MachineSpec{ID: "t", Dir: dir, WorkDir: filepath.Join(dir, "root")},
			ControlSock: sock, BootTimeout: 10 * time.Second, Software: "test",
		}, pw)
	}()
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var r supervisor.Ready
	if err := json.Unmarshal(line, &r); err != nil || !r.OK {
		t.Fatalf("ready = %s, %v", line, err)
	}
	return sock, func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}
}

func dial(t *testing.T, sock string) *agentproto.Client {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentproto.NewClient(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Many clients, each with concurrent requests, share the one guest
// connection; every client gets exactly its own output back.
func TestManyClientsRelayed(t *testing.T) {
	sock, stop := start(t)
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		c := dial(t, sock)
		defer c.Close()
		for j := 0; j < 3; j++ {
			wg.Add(1)
			go func(i, j int) {
				defer wg.Done()
				want := strings.Repeat("x", 1000*(i+1)+j)
				var out bytes.Buffer
				res, err := c.Exec(context.Background(), agentproto.ExecRequest{Argv: []string{"printf", "%s", want}}, nil, &out, io.Discard)
				if err != nil || res.ExitCode != 0 || out.String() != want {
					t.Errorf("client %d request %d: res=%+v err=%v got %d bytes", i, j, res, err, out.Len())
				}
			}(i, j)
		}
	}
	wg.Wait()
}

// A client that disconnects mid-command has its command cancelled in the
// guest; other clients are unaffected.
func TestDisconnectCancels(t *testing.T) {
	sock, stop := start(t)
	defer stop()
	gone := dial(t, sock)
	marker := filepath.Join(t.TempDir(), "still-running")
	go gone.Exec(context.Background(), agentproto.ExecRequest{Shell: "sleep 2; touch " + marker}, nil, io.Discard, io.Discard)
	// The command's shell names the marker on its command line: wait
	// until it runs, close the client, and wait until it is gone.
	waitFor(t, "the command to start", func() bool { return running(marker) })
	gone.Close()

	c := dial(t, sock)
	defer c.Close()
	res, err := c.Exec(context.Background(), agentproto.ExecRequest{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("second client: %+v %v", res, err)
	}
	waitFor(t, "the command to end", func() bool { return !running(marker) })
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the disconnected client's command kept running")
	}
}

// A client speaking another protocol version is refused with a clear error.
func TestVersionMismatch(t *testing.T) {
	sock, stop := start(t)
	defer stop()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version + 1, Software: "future"})
	agentproto.WriteFrame(conn, agentproto.Frame{Type: agentproto.TypeHello, Payload: h})
	f, err := agentproto.ReadFrame(conn)
	if err != nil || f.Type != agentproto.TypeHello {
		t.Fatalf("no hello back: %v", err)
	}
	// Then the supervisor hangs up: nothing else is served to that client.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := agentproto.ReadFrame(conn); err == nil {
		t.Fatalf("supervisor kept serving a client with another protocol version")
	}
}

// waitFor polls cond until it holds, failing t after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// running reports whether a live process has needle on its command line.
func running(needle string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmd, []byte(needle)) {
			return true
		}
	}
	return false
}

// failingBackend refuses to start, as QEMU does when --network is asked
// for without passt.
type failingBackend struct{ err error }

func (f failingBackend) Capabilities() vmm.Capabilities { return vmm.Capabilities{Kind: vmm.KindQEMU} }
func (f failingBackend) Start(context.Context, vmm.MachineSpec) (vmm.Machine, error) {
	return nil, f.err
}

// A failure keeps its class and its hint across the process boundary.
func TestReadyKeepsClassAndHint(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode string
		wantHint string
	}{
		{"precondition with hint", errdefs.New(errdefs.ErrFailedPrecondition, "install passt (apt-get install passt)", "guest networking needs passt"),
			"failed_precondition", "install passt (apt-get install passt)"},
		{"unclassed becomes unavailable", errors.New("exec: qemu: no such file"), "unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			go supervisor.Run(t.Context(), failingBackend{tt.err}, supervisor.Config{
				Spec: vmm.MachineSpec{ID: "t", Dir: t.TempDir()}, ControlSock: filepath.Join(t.TempDir(), "s"), BootTimeout: time.Minute,
			}, pw)
			line, err := bufio.NewReader(pr).ReadBytes('\n')
			if err != nil {
				t.Fatal(err)
			}
			var r supervisor.Ready
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			back := r.Err()
			if r.OK || errdefs.Code(back) != tt.wantCode || errdefs.HintOf(back) != tt.wantHint {
				t.Fatalf("ready %s -> %v (code %s, hint %q)", line, back, errdefs.Code(back), errdefs.HintOf(back))
			}
		})
	}
}
