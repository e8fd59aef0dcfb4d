package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// readUntil reads a shell from cursor until its output contains want.
func readUntil(t *testing.T, c *agentproto.Client, id string, cursor int64, want string) (string, int64) {
	t.Helper()
	var got strings.Builder
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r, data, err := c.ShellRead(t.Context(), agentproto.ShellReadRequest{ID: id, Cursor: cursor, MaxBytes: 1 << 20, WaitIdleMs: 100, MaxWaitMs: 2000})
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		got.Write(data)
		cursor = r.Next
		if strings.Contains(got.String(), want) {
			return got.String(), cursor
		}
	}
	t.Fatalf("no %q in shell output %q", want, got.String())
	return "", 0
}

func TestShell(t *testing.T) {
	c, root := serve(t)
	ctx := t.Context()
	sh, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Env: map[string]string{"PS1": "$ "}})
	if err != nil {
		t.Fatal(err)
	}
	if sh.State != agentproto.ShellRunning || sh.Cwd != "/workspace" || sh.Cols != 120 || sh.Rows != 30 {
		t.Fatalf("open: %+v", sh)
	}
	if _, err := c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("echo $((6*7)); pwd\n")}); err != nil {
		t.Fatal(err)
	}
	out, next := readUntil(t, c, sh.ID, 0, "42")
	readUntil(t, c, sh.ID, 0, filepath.Join(root, "workspace"))

	// A second reader from 0 sees the same bytes: cursors, not a queue.
	r, data, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: sh.ID, Cursor: 0, MaxBytes: 1 << 20})
	if err != nil || !strings.HasPrefix(string(data), out[:len(out)/2]) || r.Start != 0 {
		t.Fatalf("second reader: %v %q", err, data)
	}
	// Unique prefixes work; a cursor past the end does not.
	if _, _, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: sh.ID[:3], Cursor: next}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: sh.ID, Cursor: 1 << 40}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("cursor past the end: %v", err)
	}

	// INT reaches the foreground program; the shell lives on.
	c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("sleep 100\n")})
	time.Sleep(300 * time.Millisecond)
	if _, err := c.ShellSignal(ctx, agentproto.ShellSignalRequest{ID: sh.ID, Signal: "int"}); err != nil {
		t.Fatal(err)
	}
	c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("echo after-$((1+1))\n")})
	readUntil(t, c, sh.ID, next, "after-2")
	if _, err := c.ShellSignal(ctx, agentproto.ShellSignalRequest{ID: sh.ID, Signal: "USR1"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad signal: %v", err)
	}

	// exit ends it with its code, which is kept.
	c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("exit 3\n")})
	var info agentproto.ShellInfo
	for i := 0; i < 100; i++ {
		l, err := c.ShellList(ctx)
		if err != nil || len(l.Shells) != 1 {
			t.Fatalf("list: %v %+v", err, l)
		}
		if info = l.Shells[0]; info.State == agentproto.ShellExited {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.State != agentproto.ShellExited || info.ExitCode == nil || *info.ExitCode != 3 {
		t.Fatalf("after exit: %+v", info)
	}
	if _, err := c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("x")}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("write to an ended shell: %v", err)
	}
	if got, err := c.ShellClose(ctx, sh.ID); err != nil || got.State != agentproto.ShellClosed || *got.ExitCode != 3 {
		t.Fatalf("close: %v %+v", err, got)
	}
	if _, err := c.ShellClose(ctx, sh.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("close twice: %v", err)
	}
}

func TestShellCloseAndAttach(t *testing.T) {
	c, _ := serve(t)
	ctx := t.Context()
	sh, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	// Attach, type, see the echo, resize, detach: the shell stays.
	pr, pw := io.Pipe()
	var out syncBuf
	actx, detach := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.ShellAttach(actx, agentproto.ShellAttachRequest{ID: sh.ID, Cursor: 0}, pr, &out)
		done <- err
	}()
	fmt.Fprintf(pw, "stty size\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "24 80") })
	if _, err := c.ShellResize(ctx, agentproto.ShellResizeRequest{ID: sh.ID, Cols: 100, Rows: 40}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(pw, "stty size\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "40 100") })
	detach()
	if err := <-done; err == nil {
		t.Fatal("a detached attach returned no error")
	}
	if l, _ := c.ShellList(ctx); len(l.Shells) != 1 || l.Shells[0].State != agentproto.ShellRunning {
		t.Fatalf("after detach: %+v", l)
	}
	// A shell whose program ignores HUP is killed by close.
	c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("trap '' HUP; sleep 100\n")})
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if got, err := c.ShellClose(ctx, sh.ID); err != nil || got.State != agentproto.ShellClosed {
		t.Fatalf("close: %v %+v", err, got)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("close took %s", time.Since(start))
	}
	if _, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Cwd: "/nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("bad cwd: %v", err)
	}
	if _, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Cols: 5000}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad size: %v", err)
	}
}

func TestSecretsRedacted(t *testing.T) {
	c, _ := serve(t)
	ctx := t.Context()
	const secret = "s3cret-Value-for-tests"
	if err := c.SetSecrets(ctx, []agentproto.Secret{{Name: "TOKEN", Value: secret}}); err != nil {
		t.Fatal(err)
	}
	sh, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Env: map[string]string{"TOKEN": secret}})
	if err != nil {
		t.Fatal(err)
	}
	c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: sh.ID, Data: []byte("printf '%s\\n' \"$TOKEN\" | base64; echo \"<$TOKEN>\"\n")})
	out, _ := readUntil(t, c, sh.ID, 0, "<[REDACTED]>")
	if strings.Contains(out, secret) || strings.Contains(out, "czNjcmV0LVZhbHVl") {
		t.Fatalf("secret in shell output: %q", out)
	}
	sv, err := c.ServiceStart(ctx, agentproto.ServiceStartRequest{Name: "leaky", Argv: []string{"sh", "-c", `printf 'start %s' "$TOKEN"; printf ' end\n'; sleep 100`},
		Env: map[string]string{"TOKEN": secret}})
	if err != nil || sv.State != agentproto.ServiceReady {
		t.Fatalf("start: %v %+v", err, sv)
	}
	var logs []byte
	waitFor(t, func() bool {
		_, logs, _ = c.ServiceLogs(ctx, agentproto.ServiceLogsRequest{Name: "leaky"})
		return strings.Contains(string(logs), "end")
	})
	if string(logs) != "start [REDACTED] end\n" {
		t.Fatalf("logs %q", logs)
	}
	if err := c.SetSecrets(ctx, []agentproto.Secret{{Name: "bad/name", Value: "x"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
	c.StopAll(ctx, agentproto.StopAllRequest{GraceMs: 500})
}

func TestServices(t *testing.T) {
	c, root := serve(t)
	ctx := t.Context()
	ws := filepath.Join(root, "workspace")
	start := func(req agentproto.ServiceStartRequest) *agentproto.ServiceInfo {
		t.Helper()
		sv, err := c.ServiceStart(ctx, req)
		if err != nil {
			t.Fatalf("start %s: %v", req.Name, err)
		}
		return sv
	}

	// Ready by a file, then by a command.
	sv := start(agentproto.ServiceStartRequest{Name: "filer", Argv: []string{"sh", "-c", "echo hello; sleep 0.3; touch ready; exec sleep 100"},
		Readiness: &agentproto.Readiness{Type: agentproto.ReadyFile, Path: "ready"}, ReadyIntervalMs: 100})
	if sv.State != agentproto.ServiceReady || sv.ReadyAt == nil || sv.Pid == 0 || sv.Cwd != "/workspace" {
		t.Fatalf("filer: %+v", sv)
	}
	sv = start(agentproto.ServiceStartRequest{Name: "cmd", Argv: []string{"sleep", "100"},
		Readiness: &agentproto.Readiness{Type: agentproto.ReadyCommand, Command: "test -f ready"}, ReadyIntervalMs: 100})
	if sv.State != agentproto.ServiceReady {
		t.Fatalf("cmd: %+v", sv)
	}

	// Ready by TCP and HTTP: a listener of this test's own.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Read(make([]byte, 1024))
			conn.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
			conn.Close()
		}
	}()
	for _, r := range []agentproto.Readiness{{Type: "tcp", Port: port}, {Type: "http", URL: fmt.Sprintf("http://127.0.0.1:%d/", port)}} {
		sv = start(agentproto.ServiceStartRequest{Name: "net-" + r.Type, Argv: []string{"sleep", "100"}, Readiness: &r, ReadyIntervalMs: 100})
		if sv.State != agentproto.ServiceReady {
			t.Fatalf("%s: %+v", r.Type, sv)
		}
	}

	// Never ready: failed after its timeout, with its log tail, and stopped.
	sv = start(agentproto.ServiceStartRequest{Name: "never", Argv: []string{"sh", "-c", "echo waiting forever; exec sleep 100"},
		Readiness: &agentproto.Readiness{Type: "file", Path: "never"}, ReadyTimeoutMs: 800, ReadyIntervalMs: 100})
	if sv.State != agentproto.ServiceFailed || !strings.Contains(sv.LogTail, "waiting forever") || sv.ExitCode == nil {
		t.Fatalf("never: %+v", sv)
	}

	// A crash keeps its exit code.
	sv = start(agentproto.ServiceStartRequest{Name: "crash", Argv: []string{"sh", "-c", "echo boom >&2; exit 3"},
		Readiness: &agentproto.Readiness{Type: "file", Path: "never"}, ReadyIntervalMs: 100})
	if sv.State != agentproto.ServiceExited || sv.ExitCode == nil || *sv.ExitCode != 3 || !strings.Contains(sv.LogTail, "boom") {
		t.Fatalf("crash: %+v", sv)
	}

	// on-failure restarts with a backoff.
	sv = start(agentproto.ServiceStartRequest{Name: "flaky", Argv: []string{"sh", "-c", "echo run >> runs; sleep 0.2; exit 1"}, Restart: "on-failure"})
	if sv.State != agentproto.ServiceReady {
		t.Fatalf("flaky: %+v", sv)
	}
	waitFor(t, func() bool {
		runs, _ := os.ReadFile(filepath.Join(ws, "runs"))
		return strings.Count(string(runs), "run") >= 2
	})
	if s, _ := c.ServiceStatus(ctx, "flaky"); s.Restarts < 1 {
		t.Fatalf("flaky after a restart: %+v", s)
	}

	// Duplicates, bad input.
	for _, tc := range []struct {
		req   agentproto.ServiceStartRequest
		class error
	}{
		{agentproto.ServiceStartRequest{Name: "filer", Argv: []string{"true"}}, errdefs.ErrAlreadyExists},
		{agentproto.ServiceStartRequest{Name: "bad name", Argv: []string{"true"}}, errdefs.ErrInvalidArgument},
		{agentproto.ServiceStartRequest{Name: "x", Argv: []string{"true"}, Readiness: &agentproto.Readiness{Type: "http", URL: "ftp://x/"}}, errdefs.ErrInvalidArgument},
		{agentproto.ServiceStartRequest{Name: "x", Argv: []string{"true"}, Readiness: &agentproto.Readiness{Type: "udp"}}, errdefs.ErrInvalidArgument},
		{agentproto.ServiceStartRequest{Name: "x", Argv: []string{"true"}, Restart: "always"}, errdefs.ErrInvalidArgument},
	} {
		if _, err := c.ServiceStart(ctx, tc.req); !errors.Is(err, tc.class) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.class)
		}
	}

	// Logs survive the process; a stop is TERM, then KILL.
	_, logs, err := c.ServiceLogs(ctx, agentproto.ServiceLogsRequest{Name: "crash", All: true})
	if err != nil || !strings.Contains(string(logs), "boom") {
		t.Fatalf("crash logs: %v %q", err, logs)
	}
	start(agentproto.ServiceStartRequest{Name: "stubborn", Argv: []string{"sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}})
	t0 := time.Now()
	sv, err = c.ServiceStop(ctx, agentproto.ServiceStopRequest{Name: "stubborn", GraceMs: 500})
	if err != nil || sv.State != agentproto.ServiceStopped || time.Since(t0) > 5*time.Second {
		t.Fatalf("stop: %v %+v after %s", err, sv, time.Since(t0))
	}
	if a, _ := c.Activity(ctx); a.Services == 0 {
		t.Fatalf("activity: %+v", a)
	}
	res, err := c.StopAll(ctx, agentproto.StopAllRequest{GraceMs: 500, LogTailBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Services {
		if s.State == agentproto.ServiceReady || s.State == agentproto.ServiceStarting {
			t.Errorf("after stop_all: %+v", s)
		}
	}
	if a, _ := c.Activity(ctx); a.Busy() {
		t.Fatalf("activity after stop_all: %+v", a)
	}
	if _, err := c.ServiceStatus(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown service: %v", err)
	}
}

func TestServiceHTTPServer(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	c, _ := serve(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sv, err := c.ServiceStart(t.Context(), agentproto.ServiceStartRequest{Name: "web", Argv: []string{"python3", "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1"},
		Readiness: &agentproto.Readiness{Type: "http", URL: fmt.Sprintf("http://127.0.0.1:%d/", port)}, ReadyIntervalMs: 100})
	if err != nil || sv.State != agentproto.ServiceReady {
		t.Fatalf("%v %+v", err, sv)
	}
	c.StopAll(t.Context(), agentproto.StopAllRequest{GraceMs: 1000})
}

type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not met within 15 s")
}
