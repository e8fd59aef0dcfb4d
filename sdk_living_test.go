package pyro_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// The Go SDK's shells, services and secrets on a real guest (debian:12-build,
// which has python3): a REPL through a shell read by two clients at once,
// an attach with a resize and a detach, services ready, never ready,
// crashed and restarted, and a secret split across two output chunks.
func TestLiving(t *testing.T) {
	c, other := twoClients(t)
	guesttest.Need(t)
	ctx := t.Context()
	const secret = "sdk-s3cret-Value-0042"
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12-build", Shape: pyro.Shape{MemMiB: 512},
		Name: "sdk-living", Labels: map[string]string{"suite": "sdk"}, Secrets: []pyro.Secret{{Name: "TOKEN", Value: secret}}})
	if err != nil {
		t.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	id := ws.WorkspaceID
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), id) })
	if ws.Name != "sdk-living" || len(ws.Secrets) != 1 || ws.Secrets[0].SourceKind != "value" {
		t.Fatalf("created %+v", ws)
	}

	sh, err := c.OpenShell(ctx, "sdk-living", pyro.ShellOpenOptions{SecretEnv: map[string]string{"TOKEN": ""}})
	if err != nil {
		t.Fatal(err)
	}
	readUntil := func(cl *pyro.Client, cursor int64, want string) (string, int64) {
		t.Helper()
		re := regexp.MustCompile("(?m)" + want)
		var got strings.Builder
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
			r, err := cl.ReadShell(ctx, id, sh.ShellID, pyro.ShellReadOptions{Cursor: cursor, Plain: true, WaitForIdleMs: 300})
			if err != nil {
				t.Fatal(err)
			}
			got.WriteString(r.Output)
			cursor = r.NextCursor
			if re.MatchString(got.String()) {
				return got.String(), cursor
			}
		}
		t.Fatalf("no %q in %q", want, got.String())
		return "", 0
	}
	if _, err := c.WriteShell(ctx, id, sh.ShellID, pyro.ShellWriteOptions{Input: "python3 -q"}); err != nil {
		t.Fatal(err)
	}
	_, cur := readUntil(c, 0, `>>> $`)
	c.WriteShell(ctx, id, sh.ShellID, pyro.ShellWriteOptions{Input: "import os; 1+1; os.environ['TOKEN']"})
	out, _ := readUntil(c, cur, `^'\[REDACTED\]'$`)
	if !strings.Contains(out, "\n2\n") || strings.Contains(out, secret) {
		t.Fatalf("REPL: %q", out)
	}
	var wg sync.WaitGroup
	texts := make([]string, 2)
	for i, cl := range []*pyro.Client{c, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cl.ReadShell(ctx, id, sh.ShellID, pyro.ShellReadOptions{Plain: true})
			if err == nil {
				texts[i] = r.Output
			}
		}()
	}
	wg.Wait()
	if texts[0] == "" || texts[0] != texts[1] {
		t.Fatalf("two readers from 0: %q and %q", texts[0], texts[1])
	}

	// Attach: type, resize, detach; the shell runs on.
	pr, pw := io.Pipe()
	var screen syncBuffer
	resize := make(chan pyro.TermSize, 1)
	actx, detach := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.AttachShell(actx, id, sh.ShellID, pyro.ShellAttachOptions{Stdin: pr, Stdout: &screen, Resize: resize})
		done <- err
	}()
	io.WriteString(pw, "import shutil; shutil.get_terminal_size()\n")
	waitFor(t, func() bool { return strings.Contains(screen.String(), "columns=120, lines=30") })
	resize <- pyro.TermSize{Cols: 90, Rows: 20}
	time.Sleep(time.Second)
	io.WriteString(pw, "shutil.get_terminal_size()\n")
	waitFor(t, func() bool { return strings.Contains(screen.String(), "columns=90, lines=20") })
	detach()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("detach: %v", err)
	}
	if l, err := other.ListShells(ctx, id); err != nil || l.Count != 1 || l.Shells[0].State != "running" {
		t.Fatalf("after detach: %v %+v", err, l)
	}
	if got, err := c.CloseShell(ctx, id, sh.ShellID); err != nil || got.State != "closed" {
		t.Fatalf("close: %v %+v", err, got)
	}

	// Services.
	web, err := c.StartService(ctx, id, "web", pyro.ServiceStartOptions{Argv: []string{"python3", "-m", "http.server", "8080"},
		Readiness: &pyro.Readiness{Type: pyro.ReadyHTTP, URL: "http://127.0.0.1:8080/"}})
	if err != nil || web.State != "ready" || web.ReadyAt == nil || web.PublishedPorts == nil {
		t.Fatalf("web: %v %+v", err, web)
	}
	_, err = c.StartService(ctx, id, "never", pyro.ServiceStartOptions{Command: "echo warming; sleep 100",
		Readiness: &pyro.Readiness{Type: pyro.ReadyFile, Path: "never"}, ReadyTimeoutSeconds: 2})
	if !errors.Is(err, pyro.ErrTimeout) || !strings.Contains(err.Error(), "warming") {
		t.Fatalf("never: %v", err)
	}
	_, err = c.StartService(ctx, id, "crash", pyro.ServiceStartOptions{Command: "exit 3", Readiness: &pyro.Readiness{Type: pyro.ReadyTCP, Port: 9}})
	if !errors.Is(err, pyro.ErrFailedPrecondition) {
		t.Fatalf("crash: %v", err)
	}
	if s, err := c.StatusService(ctx, id, "crash"); err != nil || s.State != "exited" || s.ExitCode == nil || *s.ExitCode != 3 {
		t.Fatalf("crash status: %v %+v", err, s)
	}
	if _, err := c.StartService(ctx, id, "web", pyro.ServiceStartOptions{Command: "true"}); !errors.Is(err, pyro.ErrAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := c.StartService(ctx, id, "flaky", pyro.ServiceStartOptions{Command: "sleep 0.5; exit 1", Restart: pyro.RestartOnFailure}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		s, err := c.StatusService(ctx, id, "flaky")
		return err == nil && s.RestartCount >= 1
	})
	l, err := other.ListServices(ctx, id)
	if err != nil || l.Count != 4 {
		t.Fatalf("services: %v %+v", err, l)
	}
	if s, err := c.StopService(ctx, id, "web"); err != nil || s.State != "stopped" {
		t.Fatalf("stop: %v %+v", err, s)
	}
	if lg, err := c.LogsService(ctx, id, "web", pyro.ServiceLogsOptions{All: true}); err != nil || !strings.Contains(lg.Output, "GET / HTTP") {
		t.Fatalf("logs: %v %+v", err, lg)
	}

	// A secret split across two chunks of output, a second apart, is
	// still hidden, live and in the result.
	var live bytes.Buffer
	r, err := c.ExecWorkspace(ctx, "sdk-living", pyro.ExecOptions{Argv: []string{"bash", "-c", `printf %s "${TOKEN:0:9}"; sleep 1; printf '%s\n' "${TOKEN:9}"`},
		SecretEnv: map[string]string{"TOKEN": ""}, Stdout: &live})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stdout != "[REDACTED]\n" || live.String() != "[REDACTED]\n" {
		t.Fatalf("split secret: result %q, live %q", r.Stdout, live.String())
	}
	wl, err := c.ListWorkspacesWith(ctx, &pyro.WorkspaceListOptions{Labels: map[string]string{"suite": "sdk"}})
	if err != nil || len(wl) != 1 || wl[0].ServiceCount != 1 {
		t.Fatalf("list by label: %v %+v", err, wl)
	}
	if _, err := c.UpdateWorkspace(ctx, id, pyro.WorkspaceUpdateOptions{TTLSeconds: 120}); err != nil {
		t.Fatal(err)
	}
}

// twoClients are two clients on the same state, as two processes would be.
func twoClients(t *testing.T) (*pyro.Client, *pyro.Client) {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-sdk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	o := &pyro.Options{CacheDir: guesttest.CacheDir(), StateDir: t.TempDir(), RuntimeDir: run}
	var cs [2]*pyro.Client
	for i := range cs {
		if cs[i], err = pyro.New(o); err != nil {
			t.Fatal(err)
		}
	}
	return cs[0], cs[1]
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

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 60 s")
}
