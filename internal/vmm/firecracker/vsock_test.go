package firecracker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// fakeVsock plays Firecracker's vsock device: a unix listener at uds that
// answers "CONNECT <port>" with "OK <n>" and then hands the stream to the
// real agent handler. The first dropFirst connections are closed without a
// reply, as Firecracker does while nothing listens on the guest port.
type fakeVsock struct {
	ln        net.Listener
	port      uint32
	dropFirst int32
	accepted  atomic.Int32
	handler   *agent.Handler

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// reset closes every open connection and keeps listening, as the guest's
// driver does on Firecracker's VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (sent
// at a snapshot's creation).
func (f *fakeVsock) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

func startFakeVsock(t *testing.T, uds string, port uint32, dropFirst int32, fsRoot string) *fakeVsock {
	t.Helper()
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVsock{ln: ln, port: port, dropFirst: dropFirst, handler: agent.NewHandler(agent.Config{FSRoot: fsRoot})}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeVsock) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		n := f.accepted.Add(1)
		f.mu.Lock()
		if f.conns == nil {
			f.conns = map[net.Conn]bool{}
		}
		f.conns[c] = true
		f.mu.Unlock()
		go func() {
			defer func() {
				c.Close()
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
			}()
			line, err := readLine(c, 64)
			if err != nil {
				return
			}
			var port uint32
			if _, err := fmt.Sscanf(line, "CONNECT %d", &port); err != nil || port != f.port || n <= f.dropFirst {
				return // empty reply: nobody listening on that guest port (yet)
			}
			fmt.Fprintf(c, "OK %d\n", 1073741824+n)
			agentproto.Serve(context.Background(), c, f.handler)
		}()
	}
}

// shortDir is a temp dir with a path short enough for unix sockets.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestVsockHandshakeAndConcurrentExec(t *testing.T) {
	dir := shortDir(t)
	uds := filepath.Join(dir, VsockSocket)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// Dial before the socket exists (ENOENT while Firecracker starts), then
	// bring up a device whose guest is "not listening" for two attempts.
	type dialed struct {
		c   net.Conn
		err error
	}
	got := make(chan dialed, 1)
	go func() {
		c, err := DialVsock(ctx, uds, DefaultVsockPort, nil)
		got <- dialed{c, err}
	}()
	time.Sleep(50 * time.Millisecond)
	fv := startFakeVsock(t, uds, DefaultVsockPort, 2, t.TempDir())
	d := <-got
	if d.err != nil {
		t.Fatal(d.err)
	}
	if n := fv.accepted.Load(); n != 3 {
		t.Errorf("handshake took %d connections, want 3 (two empty replies, then OK)", n)
	}
	client, err := agentproto.NewClient(ctx, d.c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			r, err := client.Exec(ctx, agentproto.ExecRequest{Shell: fmt.Sprintf("sleep 0.3; echo out-%d; echo err-%d >&2; exit %d", i, i, i)}, nil, &out, &errb)
			switch {
			case err != nil:
				errs <- err
			case r.ExitCode != i || strings.TrimSpace(out.String()) != fmt.Sprintf("out-%d", i) || strings.TrimSpace(errb.String()) != fmt.Sprintf("err-%d", i):
				errs <- fmt.Errorf("exec %d: exit %d stdout %q stderr %q", i, r.ExitCode, out.String(), errb.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Eight 0.3 s commands multiplexed over one stream run concurrently.
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("%d concurrent execs took %v: not multiplexed?", n, el)
	}
}

func TestVsockBadReplyIsNotRetried(t *testing.T) {
	dir := shortDir(t)
	uds := filepath.Join(dir, VsockSocket)
	ln, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			readLine(c, 64)
			c.Write([]byte("ERR no\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := DialVsock(ctx, uds, 52, nil); err == nil || !strings.Contains(err.Error(), "unexpected reply") {
		t.Fatalf("err = %v, want an unexpected-reply error", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no retry on a protocol error)", n)
	}
}

func TestVsockGivesUpWhenVMMExits(t *testing.T) {
	done := make(chan struct{})
	close(done)
	_, err := DialVsock(t.Context(), filepath.Join(shortDir(t), "absent.sock"), 52, done)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("err = %v, want firecracker exited", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := DialVsock(ctx, filepath.Join(shortDir(t), "absent.sock"), 52, nil); err == nil {
		t.Fatal("dial of a missing socket succeeded")
	}
}
