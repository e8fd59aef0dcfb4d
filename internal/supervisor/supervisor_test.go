package supervisor_test

import (
	"bufio"
	"bytes"
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
	time.Sleep(300 * time.Millisecond)
	gone.Close()

	c := dial(t, sock)
	defer c.Close()
	res, err := c.Exec(context.Background(), agentproto.ExecRequest{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("second client: %+v %v", res, err)
	}
	time.Sleep(2500 * time.Millisecond)
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
