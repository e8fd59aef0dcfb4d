package hostcompat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

func start(t *testing.T) (vmm.Machine, *agentproto.Client, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m1")
	m, err := New().Start(t.Context(), vmm.MachineSpec{ID: "m1", WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := m.AgentConn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentproto.NewClient(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); m.Kill() })
	return m, c, dir
}

func TestExecInWorkspace(t *testing.T) {
	_, c, dir := start(t)
	var out bytes.Buffer
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{Shell: "pwd; echo $HOME; touch made-here"}, nil, &out, nil)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("%+v, %v", r, err)
	}
	ws := filepath.Join(dir, "workspace")
	if want := ws + "\n" + ws + "\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(filepath.Join(ws, "made-here")); err != nil {
		t.Error(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("workdir mode %v, want private", fi.Mode())
	}
}

func TestKillEndsCommands(t *testing.T) {
	m, c, _ := start(t)
	var out syncBuf
	go c.Exec(context.Background(), agentproto.ExecRequest{Shell: "echo $$; sleep 1000"}, nil, &out, nil)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	if pid <= 1 {
		t.Fatalf("no pid in %q", out.String())
	}
	m.Kill()
	m.Wait()
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("command %d survived Kill", pid)
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Error("client not told the connection ended")
	}
}

func TestShutdownEndsMachine(t *testing.T) {
	m, c, _ := start(t)
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after shutdown")
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return s[strings.LastIndexByte(s, ')')+2] != 'Z'
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
