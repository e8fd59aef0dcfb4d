package agentproto_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// startAgent serves the real agent handler, rooted in a temp dir, over one
// end of a pipe and returns a client on the other end.
func startAgent(t *testing.T) *agentproto.Client {
	t.Helper()
	host, guest := net.Pipe()
	h := agent.NewHandler(agent.Config{FSRoot: t.TempDir()})
	done := make(chan error, 1)
	go func() { done <- agentproto.Serve(context.Background(), guest, h) }()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := agentproto.NewClient(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func TestHandshakeAndPing(t *testing.T) {
	c := startAgent(t)
	if got := c.Hello(); got.Proto != agentproto.Version || !strings.HasPrefix(got.Software, "pyro-agent ") {
		t.Errorf("guest hello = %+v", got)
	}
	p, err := c.Ping(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p.KernelRelease == "" {
		t.Errorf("ping = %+v, want a kernel release", p)
	}
}

func TestVersionMismatch(t *testing.T) {
	t.Run("guest newer", func(t *testing.T) {
		host, guest := net.Pipe()
		go func() {
			agentproto.ReadFrame(guest)
			b, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version + 1, Software: "pyro-agent 9.9"})
			agentproto.WriteFrame(guest, agentproto.Frame{Type: agentproto.TypeHello, Payload: b})
		}()
		_, err := agentproto.NewClient(t.Context(), host)
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("err = %v, want failed precondition", err)
		}
		for _, want := range []string{fmt.Sprint(agentproto.Version), fmt.Sprint(agentproto.Version + 1)} {
			if !strings.Contains(err.Error(), "speaks "+want) {
				t.Errorf("err %q does not name version %s", err, want)
			}
		}
	})
	t.Run("host newer", func(t *testing.T) {
		host, guest := net.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- agentproto.Serve(context.Background(), guest, agent.NewHandler(agent.Config{FSRoot: t.TempDir()}))
		}()
		b, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version + 1, Software: "pyro 9.9"})
		agentproto.WriteFrame(host, agentproto.Frame{Type: agentproto.TypeHello, Payload: b})
		f, err := agentproto.ReadFrame(host)
		if err != nil || f.Type != agentproto.TypeHello {
			t.Fatalf("guest answer = %v, %v", f, err)
		}
		err = <-done
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), fmt.Sprintf("speaks %d", agentproto.Version+1)) {
			t.Fatalf("Serve err = %v", err)
		}
	})
}

func TestConcurrentExecsInterleave(t *testing.T) {
	c := startAgent(t)
	// Each command prints one line, then waits for the file the other
	// creates: they can only both finish if they run at the same time
	// over the one connection.
	script := func(me, other string) string {
		return fmt.Sprintf("echo start-%s; touch %s; for i in $(seq 100); do [ -e %s ] && break; sleep 0.05; done; [ -e %s ] && echo done-%s", me, me, other, other, me)
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := fmt.Sprintf("%s/f%d", dir, i)
			other := fmt.Sprintf("%s/f%d", dir, i^1)
			r, err := c.Exec(t.Context(), agentproto.ExecRequest{Shell: script(me, other), TimeoutMs: 20000}, nil, &outs[i], io.Discard)
			if err == nil && r.ExitCode != 0 {
				err = fmt.Errorf("exit %d", r.ExitCode)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil {
			t.Errorf("exec %d: %v", i, errs[i])
		}
		if !strings.Contains(outs[i].String(), fmt.Sprintf("done-%s/f%d", dir, i)) {
			t.Errorf("exec %d output %q", i, outs[i].String())
		}
	}
}

func TestCancelKillsCommand(t *testing.T) {
	c := startAgent(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, agentproto.ExecRequest{Shell: "echo $$; exec sleep 1000"}, nil, &out, nil)
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var pid int
	fmt.Sscan(out.String(), &pid)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exec did not return after cancel")
	}
	// The guest kills the group when it sees TypeCancel.
	for time.Now().Before(deadline) && alive(pid) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("pid %d still running after cancel", pid)
	}
	// The connection is still good.
	if _, err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestBigDataBothWays(t *testing.T) {
	c := startAgent(t)
	in := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MiB
	var out bytes.Buffer
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{Argv: []string{"cat"}, MaxOutput: 8 << 20}, bytes.NewReader(in), &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 0 || r.StdoutTruncated || !bytes.Equal(out.Bytes(), in) {
		t.Fatalf("result %+v, got %d bytes back, want %d identical", r, out.Len(), len(in))
	}
}

func TestWireErrorClasses(t *testing.T) {
	c := startAgent(t)
	tests := []struct {
		name string
		req  agentproto.ExecRequest
		want error
	}{
		{"empty command", agentproto.ExecRequest{}, errdefs.ErrInvalidArgument},
		{"missing cwd", agentproto.ExecRequest{Argv: []string{"true"}, Cwd: "/nope"}, errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Exec(t.Context(), tt.req, nil, nil, nil)
			if !errors.Is(err, tt.want) || !agentproto.IsWireError(err) {
				t.Fatalf("err = %v, want class %v from the wire", err, tt.want)
			}
			if errdefs.HintOf(err) == "" {
				t.Errorf("err %v lost its hint", err)
			}
		})
	}
}

func TestConnectionLoss(t *testing.T) {
	host, guest := net.Pipe()
	go agentproto.Serve(context.Background(), guest, agent.NewHandler(agent.Config{FSRoot: t.TempDir()}))
	c, err := agentproto.NewClient(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(t.Context(), agentproto.ExecRequest{Argv: []string{"sleep", "1000"}}, nil, nil, nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	guest.Close()
	if err := <-done; !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	<-c.Done()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
