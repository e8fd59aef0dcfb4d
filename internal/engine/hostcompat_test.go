package engine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// A guest could boot here (QEMU is installed), but the environment cannot
// be pulled or built: that is an error, not a reason to run on the host,
// even with host compatibility allowed.
func TestNoHostCompatOnPullFailure(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"qemu-system-x86_64", "qemu-img"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("needs %s installed (the host must look able to boot a guest)", name)
		}
		os.Symlink(p, filepath.Join(bin, name))
	}
	t.Setenv("PATH", bin) // no mmdebstrap: a local build fails at once
	t.Setenv("PYRO_QEMU_BIN", "")
	t.Setenv("PYRO_ENV_REGISTRY", "none")
	e := newEngine(t, BackendAuto)
	_, err := e.CreateVM(t.Context(), api.CreateVMOptions{Environment: "debian:12", Shape: hostOnly})
	if err == nil {
		t.Fatal("created a VM")
	}
	if errors.Is(err, errdefs.ErrUnavailable) && strings.Contains(err.Error(), "no guest can boot") {
		t.Fatalf("the pull failure was reported as no backend: %v", err)
	}
	if vms, _ := e.ListVMs(t.Context()); len(vms) != 0 {
		t.Fatalf("a VM was made (%s): the pull failure fell back to the host", vms[0].ExecutionMode)
	}
	t.Logf("error: %v", err)
}

// daemonize runs, in a host_compat VM or workspace, a command that leaves
// a daemon behind (setsid and a double fork: a new session, its parents
// gone) and returns the daemon's pid once the command has returned.
func daemonize(t *testing.T, run func(cmd string) error, alive bool) int {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "daemon.pid")
	// The command returns only once the daemon's pid is written: the end
	// of a run kills the tree at once, and a busy host may not yet have
	// run the echo.
	cmd := `setsid sh -c '(sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > ` + pidfile + `.tmp && mv ` + pidfile + `.tmp ` + pidfile + `) &' </dev/null >/dev/null 2>&1; ` +
		`while [ ! -s ` + pidfile + ` ]; do sleep 0.01; done`
	if err := run(cmd); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 || (alive && !running(pid)) {
		t.Fatalf("no daemon (pid %d)", pid)
	}
	return pid
}

// running reports whether pid is alive (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func gone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !running(pid) {
			return
		}
	}
	t.Errorf("daemon %d survived", pid)
}

// Delete, TTL expiry and the end of a run kill everything a host_compat
// command started, daemons that left its process group and session
// included.
func TestHostCompatKillsDaemons(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()

	t.Run("workspace delete", func(t *testing.T) {
		ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
		if err != nil {
			t.Fatal(err)
		}
		pid := daemonize(t, func(cmd string) error {
			_, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: cmd})
			return err
		}, true)
		if _, err := e.DeleteWorkspace(ctx, ws.WorkspaceID); err != nil {
			t.Fatal(err)
		}
		gone(t, pid, 5*time.Second)
	})

	t.Run("ttl", func(t *testing.T) {
		ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12",
			Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 2}})
		if err != nil {
			t.Fatal(err)
		}
		pid := daemonize(t, func(cmd string) error {
			_, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: cmd})
			return err
		}, true)
		// The supervisor powers the machine off at its expiry, on its own.
		gone(t, pid, 15*time.Second)
	})

	t.Run("run", func(t *testing.T) {
		// The run deletes its VM before it returns.
		pid := daemonize(t, func(cmd string) error {
			_, err := e.Run(ctx, api.RunOptions{Environment: "debian:12", Shape: hostOnly, Command: cmd})
			return err
		}, false)
		gone(t, pid, 5*time.Second)
	})
}
