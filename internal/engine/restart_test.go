package engine

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pyro-mcp/pyro/api"
)

// Right after a VM dies, its supervisor lives on for a moment without
// serving (here: frozen, its socket gone). The next exec and push boot the
// workspace again instead of failing with "not running".
func TestExecRestartsAfterSupervisorGone(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	dying := func() {
		t.Helper()
		var rec vmRecord
		if err := e.wss.Read(ws.WorkspaceID, &rec); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(rec.SupervisorPID, syscall.SIGSTOP)
		os.Remove(filepath.Join(e.runDir(rec.ID), "ctl.sock"))
		if !e.alive(&rec) {
			t.Fatal("the frozen supervisor does not look alive: the test shows nothing")
		}
	}

	dying()
	r, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: "echo ok"})
	if err != nil || r.Stdout != "ok\n" || !r.Restarted {
		t.Fatalf("exec after the supervisor went: %+v %v", r, err)
	}

	dying()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	if _, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, src, api.WorkspaceRoot); err != nil {
		t.Fatalf("push after the supervisor went: %v", err)
	}
	st, _ := e.StatusWorkspace(ctx, ws.WorkspaceID)
	if st.Restarts != 2 {
		t.Errorf("restarts %d, want 2", st.Restarts)
	}
}
