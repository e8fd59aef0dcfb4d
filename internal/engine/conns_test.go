package engine

import (
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

// Commands whose output goes to memory share one connection per VM; a
// supervisor that was replaced (the workspace restarted) gets a new one.
func TestExecSharesAConnection(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	conn := func() agentConn {
		e.conns.mu.Lock()
		defer e.conns.mu.Unlock()
		return e.conns.m[ws.WorkspaceID]
	}
	exec := func() {
		t.Helper()
		if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
	}
	exec()
	first := conn()
	exec()
	if first.c == nil || conn().c != first.c {
		t.Fatalf("second exec used another connection (%p, then %p)", first.c, conn().c)
	}
	rec, err := e.read(e.wss, ws.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(-rec.SupervisorPID, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); e.alive(rec) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	exec() // boots it again
	if now := conn(); now.c == first.c || now.pid == first.pid || !now.alive(now.pid) {
		t.Errorf("after a restart: connection %p to pid %d, before %p to pid %d", now.c, now.pid, first.c, first.pid)
	}
	if _, err := e.DeleteWorkspace(ctx, ws.WorkspaceID); err != nil {
		t.Fatal(err)
	}
}
